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
from bench.store.validate import output_problems, typed_problems

FORMAT = "neuroreg-bench/cell"
VERSION = 1


def cells_dir(workdir: Path) -> Path:
    return Path(workdir) / "cells"


def _number(v: float) -> float | str:
    return v if math.isfinite(v) else repr(v)  # JSON has no inf/nan: 'inf', '-inf', 'nan'


def _value(v) -> float:
    """A number, or the strings JSON cannot hold otherwise ('inf', '-inf', 'nan')."""
    if isinstance(v, str) and v in ("inf", "-inf", "nan"):
        return float(v)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError(f"value {v!r} is not a number")
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
    """A cell file's content, checked as data from outside: its types and bounds, its digest,
    and its numbers' ranges and consistency (bench.store.validate). ValueError names every
    problem found."""
    try:
        doc = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"not JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("format_version", 0) != VERSION:
        raise ValueError(f"not a {FORMAT} file of version {VERSION}")
    missing = {"key", "digest", "meta", "notes", "flags", "metrics", "examples"} - set(doc)
    if missing:
        raise ValueError(f"missing {sorted(missing)}")
    if not isinstance(doc["key"], dict) or not isinstance(doc["meta"], dict):
        raise ValueError("'key' and 'meta' must be objects")
    problems = typed_problems(doc["key"], doc["meta"])
    if problems:
        raise ValueError("; ".join(problems))
    key = CellKey(**doc["key"])
    if key.digest != doc["digest"]:
        raise ValueError("its key does not hash to its digest")
    try:
        out = EvalOutput(notes=dict(doc["notes"]), flags=[str(f) for f in doc["flags"]])
        out.metrics = [
            Metric(MetricId(str(n), str(s)), _param(p), str(st), _value(v), str(a))
            for n, s, p, st, a, v in doc["metrics"]
        ]
        out.examples = [
            Example(
                MetricId(str(n), str(s)),
                _param(p),
                str(st),
                torch.tensor([_value(v) for v in vs], dtype=torch.float64),
                str(a),
            )
            for n, s, p, st, a, vs in doc["examples"]
        ]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"malformed metrics or examples ({exc})") from None
    problems = output_problems(out, doc["meta"]["n_images"])
    if problems:
        raise ValueError("; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else ""))
    return key, doc["meta"], out


def _param(p) -> float | None:
    if p is None:
        return None
    if isinstance(p, bool) or not isinstance(p, (int, float)):
        raise TypeError(f"grid point {p!r} is not a number")
    return float(p)


def write_cell_file(workdir: Path, key: CellKey, meta: dict, output: EvalOutput) -> Path:
    path = cells_dir(workdir) / f"{key.digest}.json"
    atomic_write_text(path, encode(key, meta, output))
    return path


def cell_files(workdir: Path) -> Iterator[Path]:
    yield from sorted(cells_dir(workdir).glob("*.json"))


def read_cell(path: Path, expected: dict[str, dict] | None = None) -> tuple[CellKey, dict, EvalOutput]:
    """A cell file, decoded and checked; with ``expected`` (digest -> the meta a plan fixes:
    regularizer, arch, dataset, n_images), it must be one of those cells and agree with it."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"unreadable ({exc})") from None
    key, meta, output = decode(text)
    if path.stem != key.digest:
        raise ValueError(f"named {path.stem} but holds cell {key.digest}")
    check_planned(key, meta, expected)
    return key, meta, output


def check_planned(key: CellKey, meta: dict, expected: dict[str, dict] | None) -> None:
    """With ``expected`` (digest -> the meta a plan fixes), a cell must be one of the plan's
    and agree with it; ValueError says how it does not."""
    if expected is None:
        return
    if key.digest not in expected:
        raise ValueError(f"not a cell of this plan (suite {key.suite!r}, model {key.model!r})")
    wrong = [k for k, v in expected[key.digest].items() if meta.get(k) != v]
    if wrong:
        raise ValueError(f"its {', '.join(wrong)} differ from the plan's")


def merge(store: ResultStore, workdir: Path, expected: dict[str, dict] | None = None) -> tuple[int, int, list[str]]:
    """Insert every valid cell file not yet in the store (with ``expected``: only the plan's
    cells): (merged, already there, refused files with why). Idempotent, safe to rerun and to
    run while workers still write (a file appears whole); a refused file is left in place."""
    merged = present = 0
    bad = []
    remove_stale_temporaries(cells_dir(workdir))
    for path in cell_files(workdir):
        if store.has_digest(path.stem):
            present += 1
            continue
        try:
            key, meta, output = read_cell(path, expected)
        except ValueError as exc:
            bad.append(f"{path.name}: {exc}")
            continue
        store.write_cell(key, output=output, **meta)
        merged += 1
    return merged, present, bad
