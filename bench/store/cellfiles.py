"""Finished cells as files: how workers on many machines feed one SQLite store.

Many writers on one SQLite file over a network filesystem corrupt it, so a worker never writes
the store: it writes each finished cell as its own file, atomically, named by the cell's content
key (``WORKDIR/cells/<digest>.json``), and one process merges the files into SQLite
(``bench merge``; the driver of a run merges as cells finish). A cell computed twice has the
same key and the same numbers: its file is rewritten, the store keeps one."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import torch

from bench.evals.base import EvalOutput, Example, Metric
from bench.evals.reporting import MetricId
from bench.io import atomic_write_text, remove_stale_temporaries
from bench.store.sqlite import CellKey, ResultStore

FORMAT = "neuroreg-bench/cell"
VERSION = 1


def cells_dir(workdir: Path) -> Path:
    return Path(workdir) / "cells"


def _number(v: float) -> float | str:
    return v if math.isfinite(v) else repr(v)  # JSON has no inf/nan: 'inf', '-inf', 'nan'


def _value(v) -> float:
    return float(v)


def encode(key: CellKey, meta: dict, output: EvalOutput) -> str:
    doc = {
        "format": FORMAT,
        "format_version": VERSION,
        "key": asdict(key),
        "digest": key.digest,
        "meta": meta,
        "notes": output.notes,
        "flags": output.flags,
        "metrics": [
            [m.metric.name, m.metric.source, m.param, m.statistic, m.attack, _number(m.value)] for m in output.metrics
        ],
        "examples": [
            [e.metric.name, e.metric.source, e.param, e.statistic, e.attack, [_number(v) for v in e.values.tolist()]]
            for e in output.examples
        ],
    }
    return json.dumps(doc, sort_keys=True)


def decode(text: str) -> tuple[CellKey, dict, EvalOutput]:
    doc = json.loads(text)
    if doc.get("format") != FORMAT or doc.get("format_version", 0) > VERSION:
        raise ValueError(f"not a {FORMAT} file of version <= {VERSION}")
    key = CellKey(**doc["key"])
    if key.digest != doc["digest"]:
        raise ValueError("its key does not hash to its digest")
    out = EvalOutput(notes=doc["notes"], flags=doc["flags"])
    out.metrics = [Metric(MetricId(n, s), p, st, _value(v), a) for n, s, p, st, a, v in doc["metrics"]]
    out.examples = [
        Example(MetricId(n, s), p, st, torch.tensor([_value(v) for v in vs], dtype=torch.float64), a)
        for n, s, p, st, a, vs in doc["examples"]
    ]
    return key, doc["meta"], out


def write_cell_file(workdir: Path, key: CellKey, meta: dict, output: EvalOutput) -> Path:
    path = cells_dir(workdir) / f"{key.digest}.json"
    atomic_write_text(path, encode(key, meta, output))
    return path


def cell_files(workdir: Path) -> Iterator[Path]:
    yield from sorted(cells_dir(workdir).glob("*.json"))


def merge(store: ResultStore, workdir: Path) -> tuple[int, int, list[str]]:
    """Insert every cell file not yet in the store: (merged, already there, unreadable files).
    Idempotent, safe to rerun and to run while workers still write (a file appears whole)."""
    merged = present = 0
    bad = []
    remove_stale_temporaries(cells_dir(workdir))
    for path in cell_files(workdir):
        if store.has_digest(path.stem):
            present += 1
            continue
        try:
            key, meta, output = decode(path.read_text())
        except (OSError, ValueError, KeyError, TypeError) as exc:
            bad.append(f"{path.name}: {exc}")
            continue
        store.write_cell(key, output=output, **meta)
        merged += 1
    return merged, present, bad
