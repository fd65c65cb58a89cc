"""A suite's finished results as one file that outlives the machine that computed them.

A long experiment (hours of training on two cores) can outlast the workdir it runs in: a
session's machine is replaced, its ``.bench`` with it. ``bench export SUITE --to FILE`` writes
every stored cell of the suite's plan, in the cell-file encoding, and the training records their
checkpoints come from (histories, layer weights and hashes; no weights), as gzip'd JSON lines.
``bench merge --from FILE`` puts them into another store, each cell checked as a worker's cell
file is (bench.store.cellfiles) and each training record as typed data. A (model, seed) whose
cells are all stored is then read, not retrained (bench.plan), so the run resumes on the new
machine with the seeds still to do. Committed with the experiment's report, the file is its
results as content.

Gzip without a timestamp and lines in a fixed order: the same results give the same bytes."""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Callable
from pathlib import Path

from bench.errors import BenchError
from bench.io import atomic_write_bytes
from bench.store.cellfiles import check_planned, decode, encode
from bench.store.sqlite import TRAINING_COLUMNS, ResultStore
from bench.store.validate import training_problems

FORMAT = "neuroreg-bench/results"
VERSION = 1
TRAINING = "neuroreg-bench/training"


def export_results(store: ResultStore, plan, path: Path) -> tuple[int, int]:
    """The plan's stored cells and the training records of its checkpoints into ``path``:
    (cells, trainings) written. Cells are ordered by model, seed and evaluation."""
    suite = plan.run.suite
    cells = sorted(
        (c for c in plan.cells if c.key is not None and store.has(c.key)),
        key=lambda c: (c.card.name, c.seed, c.spec_index),
    )
    hashes = {(name, h) for (name, _), (_, h) in plan.checkpoints.items()}
    trainings = sorted(store.trainings(hashes), key=lambda r: (r["model"], r["seed"], r["checkpoint_hash"]))
    header = {"format": FORMAT, "format_version": VERSION, "suite": suite.name, "suite_version": suite.version}
    lines = [json.dumps(header, sort_keys=True)]
    lines += [
        json.dumps({"format": TRAINING, **{c: r[c] for c in TRAINING_COLUMNS}}, sort_keys=True) for r in trainings
    ]
    for cell in cells:
        key, meta, output = store.stored_cell(cell.key.digest)
        lines.append(encode(key, meta, output))
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as fh:
        fh.write(("\n".join(lines) + "\n").encode())
    atomic_write_bytes(path, buffer.getvalue())
    return len(cells), len(trainings)


def import_results(
    store: ResultStore, lines: list[tuple[int, str]], expected: Callable[[], dict[str, dict]] | None = None
) -> tuple[int, int, int, list[str]]:
    """Every valid training record and cell of an export's lines (``read_export``) not yet in
    ``store``: (cells merged, cells already there, trainings merged, refused lines with why).
    ``expected``: called once the training records are in (a plan's cell keys need their
    checkpoint hashes), it gives digest -> the meta the plan fixes, and only the plan's cells
    are merged. A refused line is skipped, the rest merged; rerunning merges nothing twice."""
    trained = 0
    bad, cells = [], []
    for number, line in lines:
        try:
            doc = json.loads(line)
        except (json.JSONDecodeError, RecursionError) as exc:
            bad.append(f"line {number}: not JSON ({exc})")
            continue
        if not (isinstance(doc, dict) and doc.get("format") == TRAINING):
            cells.append((number, line))
            continue
        row = {k: v for k, v in doc.items() if k != "format"}
        problems = training_problems(row)
        if problems:
            bad.append(f"line {number}: " + "; ".join(problems[:3]))
        else:
            trained += store.write_training_record(row)
    plan_meta = expected() if expected is not None else None
    merged = present = 0
    for number, line in cells:
        try:
            key, meta, output = decode(line)
            check_planned(key, meta, plan_meta)
        except ValueError as exc:
            bad.append(f"line {number}: {exc}")
            continue
        if store.has(key):
            present += 1
        else:
            store.write_cell(key, output=output, **meta)
            merged += 1
    return merged, present, trained, bad


def read_export(path: Path, suite: str | None = None) -> list[tuple[int, str]]:
    """The numbered lines of an export after its header, which must be this format's (and of
    ``suite``): read whole before any store is opened, so a wrong file changes nothing."""
    try:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise BenchError(f"{path}: not a readable gzip'd export ({exc}); pass a file 'bench export' wrote") from None
    try:
        header = json.loads(lines[0]) if lines else {}
    except (json.JSONDecodeError, RecursionError):
        header = {}
    if not isinstance(header, dict) or header.get("format") != FORMAT or header.get("format_version", 0) > VERSION:
        raise BenchError(
            f"{path}: not a {FORMAT} export of version {VERSION} or older; pass a file 'bench export' wrote"
        )
    if suite is not None and header.get("suite") != suite:
        raise BenchError(f"{path}: an export of suite {header.get('suite')!r}, not {suite!r}")
    return list(enumerate(lines[1:], start=2))
