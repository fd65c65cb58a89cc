"""Regression checks: compare a suite's numbers with a committed reference, within the
per-evaluation tolerances of the suite card. Pure comparison; the reference file is the only I/O."""
from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench.cards import SuiteCard
from bench.errors import BenchError

KEY = ["model", "seed", "evaluation", "param", "statistic"]
REFERENCE_FORMAT = "neuroreg-bench/reference"


def reference_numbers(results: pd.DataFrame) -> list[dict]:
    rows = results[KEY + ["value"]].sort_values(KEY, na_position="first").to_dict("records")
    return [{**r, "seed": int(r["seed"]), "param": None if pd.isna(r["param"]) else float(r["param"]),
             "value": float(r["value"])} for r in rows]


def write_reference(suite: SuiteCard, results: pd.DataFrame, path: Path, packages: str) -> None:
    doc = {"format": REFERENCE_FORMAT, "suite": suite.name, "suite_version": suite.version,
           "packages": json.loads(packages), "numbers": reference_numbers(results)}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as fh:  # inf is written as Infinity (Python's json reads it back)
        json.dump(doc, fh, indent=1)
        fh.write("\n")
    os.replace(tmp, path)


def read_reference(path: Path, suite: SuiteCard) -> list[dict]:
    try:
        doc = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise BenchError(f"{path}: no reference file; create it with 'bench check {suite.name} --against {path} --update'") from None
    except json.JSONDecodeError as exc:
        raise BenchError(f"{path}: not valid JSON ({exc}); regenerate it with --update") from None
    if not isinstance(doc, dict) or doc.get("format") != REFERENCE_FORMAT:
        raise BenchError(f"{path}: not a {REFERENCE_FORMAT} file; regenerate it with --update")
    if (doc.get("suite"), doc.get("suite_version")) != (suite.name, suite.version):
        raise BenchError(f"{path}: reference of suite {doc.get('suite')} v{doc.get('suite_version')}, not "
                         f"{suite.name} v{suite.version}; regenerate it with --update")
    return doc["numbers"]


@dataclass(frozen=True)
class Change:
    model: str
    seed: int
    evaluation: str
    param: float | None
    statistic: str
    reference: float
    current: float
    tolerance: float

    @property
    def delta(self) -> float:
        if self.reference == self.current:  # also inf == inf
            return 0.0
        return self.current - self.reference

    @property
    def status(self) -> str:
        if math.isnan(self.reference):
            return "NEW"
        if math.isnan(self.current):
            return "MISSING"
        return "ok" if abs(self.delta) <= self.tolerance else "REGRESSION"


def compare(reference: list[dict], results: pd.DataFrame, suite: SuiteCard) -> list[Change]:
    """Every number of either side, paired by (model, seed, evaluation, param, statistic)."""
    def key(r):
        return (r["model"], int(r["seed"]), r["evaluation"], None if r["param"] is None else float(r["param"]), r["statistic"])

    ref = {key(r): float(r["value"]) for r in reference}
    cur = {key(r): float(r["value"]) for r in reference_numbers(results)}
    changes = []
    for k in sorted(set(ref) | set(cur), key=lambda k: (k[0], k[1], k[2], -1 if k[3] is None else k[3], k[4])):
        changes.append(Change(*k, ref.get(k, math.nan), cur.get(k, math.nan), suite.check.tolerance(k[2])))
    return changes


def failed(changes: list[Change]) -> bool:
    return any(c.status != "ok" for c in changes)
