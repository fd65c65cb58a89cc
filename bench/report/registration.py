"""Whether a suite's primary endpoints were committed before its models were trained: the
earliest commit since which the card's ``[[endpoints]]`` have read as they do now, against each
training's recorded start time and code commit (git history is the witness; without it the order
cannot be shown, and the report says so)."""

from __future__ import annotations

import json
import tomllib
from datetime import datetime
from pathlib import Path

import pandas as pd

from bench.codestate import git


def _endpoints_of(text: str) -> str | None:
    try:
        return json.dumps(tomllib.loads(text).get("endpoints", []), sort_keys=True)
    except tomllib.TOMLDecodeError:
        return None


def registration_commit(card: Path) -> tuple[str, str] | str:
    """(commit, commit time) since which the card's endpoints are unchanged, or why none."""
    card = card.resolve()
    top = git("rev-parse", "--show-toplevel", cwd=card.parent)
    if top is None:
        return "the suite card is not in a git checkout, so the order of endpoints and trainings cannot be shown"
    top = Path(top.strip())
    rel = str(card.relative_to(top))
    current = _endpoints_of(card.read_text())
    if git("diff", "--quiet", "HEAD", "--", rel, cwd=top) is None:  # exit 1: uncommitted changes
        committed = git("show", f"HEAD:{rel}", cwd=top)
        if committed is None or _endpoints_of(committed) != current:
            return "the card's endpoints are not committed: commit them before the first training"
    log = git("log", "--format=%H %cI", "--", rel, cwd=top) or ""
    found = None
    for line in log.splitlines():  # newest first: walk back while the endpoints read the same
        commit, when = line.split(" ", 1)
        text = git("show", f"{commit}:{rel}", cwd=top)
        if text is None or _endpoints_of(text) != current:
            break
        found = (commit, when)
    return found or "the card's endpoints are not in its git history"


def endpoint_registration(card_path: Path, trainings: pd.DataFrame) -> tuple[list[str], list[str]]:
    """(lines for the report, flags): the registration commit and, per training, whether it
    started after it from code that contains it."""
    reg = registration_commit(Path(card_path))
    if isinstance(reg, str):
        return [reg], [f"endpoints: {reg}"]
    commit, when = reg
    registered = datetime.fromisoformat(when)
    lines = [f"Endpoints committed in {commit[:12]} at {when}."]
    top = Path(card_path).resolve().parent
    # a card in this checkout's repository: a training's code commit must also contain the endpoints
    # (clock-free evidence); a card kept elsewhere is dated by the clock alone
    same_repo = git("rev-parse", "--show-toplevel", cwd=top) == git("rev-parse", "--show-toplevel")
    before, unknown, outside = [], [], []
    for _, t in trainings.iterrows():
        record = json.loads(t.get("provenance") or "{}").get("training") or {}
        name = f"{t['model']} seed {t['seed']}"
        if not record.get("started_at"):
            unknown.append(name)
            continue
        if datetime.fromisoformat(record["started_at"]) <= registered:
            before.append(name)
        first = (record.get("code") or [{}])[0].get("commit")
        if same_repo and (not first or git("merge-base", "--is-ancestor", commit, first, cwd=top) is None):
            outside.append(name)
    flags = []
    if before:
        flags.append(
            f"endpoints: {len(before)} trainings started before the endpoints were committed ({', '.join(before[:4])}{', …' if len(before) > 4 else ''})"
        )
    if outside:
        flags.append(
            f"endpoints: {len(outside)} trainings ran code that does not contain the endpoint commit "
            f"({', '.join(outside[:4])}{', …' if len(outside) > 4 else ''})"
        )
    if unknown:
        flags.append(
            f"endpoints: {len(unknown)} trainings record no start time (trained before it was recorded), so the order is not shown for them"
        )
    if not flags and len(trainings):
        lines.append(
            f"All {len(trainings)} trainings started after it"
            + (
                ", from commits that contain it"
                if same_repo
                else " (by the clock: the card is kept outside this checkout)"
            )
            + ": the endpoints precede the data."
        )
    return lines + flags, flags
