"""Read a suite's cells from the store and write reports/SUITE/{leaderboard.md, results.csv,
noise.png}. Files are written into a temporary folder and moved into place, so a failure
never leaves a half-written report."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from bench.cards import SuiteCard
from bench.config import canonical_json
from bench.errors import BenchError
from bench.models.resnet import TAPS
from bench.report.summary import leaderboard_table, sanity_flags, seed_summary
from bench.store import ResultStore
from bench.suite.runner import suite_evaluations

CSV_COLUMNS = ["model", "regularizer", "arch", "seed", "dataset", "suite", "suite_version", "evaluation", "param",
               "statistic", "value", "n_images", "subset_hash", "card_hash", "checkpoint_hash", "device"]


@dataclass
class Leaderboard:
    suite: SuiteCard
    results: pd.DataFrame  # long format, CSV_COLUMNS
    table: pd.DataFrame
    cells: pd.DataFrame  # one row per cell: evaluation, params, notes, n_images
    trainings: pd.DataFrame
    flags: list[str]
    missing: list[str]

    def markdown(self) -> str:
        return render_markdown(self)

    def text_table(self) -> str:
        return tabulate(self.table, headers="keys", tablefmt="simple", showindex=False)


def build_leaderboard(suite: SuiteCard, store: ResultStore) -> Leaderboard:
    """The newest stored cell for every (model, seed, evaluation) the suite card asks for."""
    results, cells, missing = [], [], []
    for card in suite.cards:
        for seed in suite.seeds:
            for spec in suite_evaluations(suite):
                params = canonical_json(spec.params)
                row = next(store.rows(
                    "SELECT * FROM cells WHERE suite=? AND suite_version=? AND model=? AND card_hash=? AND seed=? "
                    "AND evaluation=? AND params=? ORDER BY finished_at DESC LIMIT 1",
                    (suite.name, suite.version, card.name, card.card_hash, seed, spec.kind, params)), None)
                if row is None:
                    missing.append(f"{card.name} seed {seed} {spec.kind} {params}")
                    continue
                cell = dict(row)
                cells.append(cell)
                for m in store.rows("SELECT metric, param, statistic, value FROM metrics WHERE key=?", (cell["key"],)):
                    results.append({**{c: cell.get(c) for c in CSV_COLUMNS}, "evaluation": m["metric"],
                                    "param": m["param"], "statistic": m["statistic"], "value": m["value"]})
    results = pd.DataFrame(results, columns=CSV_COLUMNS)
    trainings = pd.DataFrame([dict(r) for r in store.rows("SELECT * FROM trainings")])
    if not trainings.empty:
        keep = {(c.name, c.card_hash) for c in suite.cards}
        trainings = trainings[[(m, h) in keep for m, h in zip(trainings["model"], trainings["card_hash"])]]
        used = set(results["checkpoint_hash"])
        trainings = trainings[trainings["checkpoint_hash"].isin(used)]
    table = leaderboard_table(seed_summary(results), [c.name for c in suite.cards]) if len(results) else pd.DataFrame()
    return Leaderboard(suite, results, table, pd.DataFrame(cells), trainings, sanity_flags(results), missing)


def _describe_evaluations(board: Leaderboard) -> list[str]:
    lines = []
    if board.cells.empty:
        return lines
    for (kind, params), c in board.cells.groupby(["evaluation", "params"], sort=False):
        notes = json.loads(c["notes"].iloc[0])
        p = ", ".join(f"{k}={v}" for k, v in json.loads(params).items()) or "-"
        extra = "; ".join(f"{k}: {v}" for k, v in notes.items())
        lines.append(f"- `{kind}` ({p}) on {int(c['n_images'].iloc[0])} images x {c['seed'].nunique()} seed(s)"
                     + (f"; {extra}" if extra else ""))
    return lines


def render_markdown(board: Leaderboard) -> str:
    s = board.suite
    subset = board.results["subset_hash"].iloc[0] if len(board.results) else "-"
    out = [f"# Leaderboard: suite `{s.name}` (version {s.version})", ""]
    if s.description:
        out += [s.description, ""]
    out += [f"Dataset `{s.dataset}`, evaluation subset of {s.subset.size} test images (seed {s.subset.seed}, hash "
            f"`{subset}`), training seeds {list(s.seeds)}. Accuracies in %, mean over seeds (± SEM where more "
            "than one seed). Robust accuracy counts clean errors as failures (Foolbox semantics). Minimal "
            "perturbations are medians over images at [0,1] pixel scale, found by one attack: upper bounds.", ""]
    out += [tabulate(board.table, headers="keys", tablefmt="github", showindex=False) if len(board.table) else "(no results)", ""]
    out += ["## What was evaluated", "", *_describe_evaluations(board), ""]
    out += ["## Sanity flags", ""]
    out += [f"- {f}" for f in board.flags] or ["- none raised"]
    if board.missing:
        out += ["", "## Missing cells (run `bench run " + s.name + "`)", "", *[f"- {m}" for m in board.missing]]
    if not board.trainings.empty:
        out += ["", "## Learned layer weights (softmax(theta) at the best-validation epoch)", ""]
        rows = []
        for _, t in board.trainings.iterrows():
            w = json.loads(t["layer_weights"])
            rows.append([t["model"], t["seed"], t["best_epoch"], *(f"{v:.3f}" for v in w)] if w else
                        [t["model"], t["seed"], t["best_epoch"], *(["-"] * len(TAPS))])
        out += [tabulate(rows, headers=["model", "seed", "best epoch", *TAPS], tablefmt="github"), ""]
        out += ["## Provenance", ""]
        prov = [[t["model"], t["seed"], t["card_hash"], t["checkpoint_hash"], t["device"], f"{t['seconds']:.0f}"]
                for _, t in board.trainings.iterrows()]
        out += [tabulate(prov, headers=["model", "seed", "card hash", "checkpoint hash", "trained on", "train s"],
                         tablefmt="github"), ""]
        devices = sorted(set(board.results["device"]))
        out += [f"Evaluated on {', '.join(devices)}; packages {board.cells['packages'].iloc[0]}."]
    return "\n".join(out) + "\n"


def plot_noise(board: Leaderboard, path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = seed_summary(board.results)
    kinds = [e for e in dict.fromkeys(summary["evaluation"]) if e.startswith("noise-")]
    if not kinds:
        return False
    fig, axes = plt.subplots(1, len(kinds), figsize=(4.5 * len(kinds), 3.6), squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        for model in dict.fromkeys(summary["model"]):
            d = summary[(summary["evaluation"] == kind) & (summary["model"] == model)].sort_values("param")
            ax.plot(d["param"], d["mean"] * 100, marker="o", ms=3, label=f"{model} ({d['regularizer'].iloc[0]})")
            if (d["n"] > 1).any():
                ax.fill_between(d["param"], (d["mean"] - d["sem"]) * 100, (d["mean"] + d["sem"]) * 100, alpha=0.2)
        ax.set_xlabel(f"{kind.removeprefix('noise-')} noise level ([0,1] scale)")
        ax.set_ylabel("accuracy %")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"{board.suite.name}: accuracy vs noise (per-image clamp)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120, metadata={"Software": None})
    plt.close(fig)
    return True


def write_reports(board: Leaderboard, reports_dir: Path) -> Path:
    if board.results.empty:
        raise BenchError(f"suite {board.suite.name!r}: no results in the store; run 'bench run {board.suite.name}' first")
    dest = Path(reports_dir) / board.suite.name
    dest.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest, prefix=".tmp-"))
    try:
        (tmp / "leaderboard.md").write_text(board.markdown())
        board.results.to_csv(tmp / "results.csv", index=False)
        plot_noise(board, tmp / "noise.png")
        for f in tmp.iterdir():
            os.replace(f, dest / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest
