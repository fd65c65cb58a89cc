"""Regression checks against a committed reference, in two parts that fail for different reasons.

Evaluation drift: the reference keeps one trained checkpoint per model (committed beside it).
They are evaluated again and every number must match within the card's tight tolerances. The
weights are fixed, so this holds on any machine; it catches any change of evaluation code.

Training drift: the suite's models are trained again over its seeds. Training amplifies the
last bit of a CPU's kernels, so no number of a fresh training is comparable one to one across
machines; its distribution is. Per model and summary column (clean accuracy, curve AUCs,
medians, training losses) the rule is

    |mean_now - mean_ref| <= t * sd_ref * sqrt(1/k_now + 1/k_ref) + floor * |mean_ref|

with sd_ref the spread over the k_ref seeds trained when the reference was written, and t the
two-sided Student-t quantile (df = k_ref - 1) at a family-wise false-alarm rate over all columns
(Bonferroni). Pure functions; reading and writing the reference file are the only I/O."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import t as student_t

from bench.cards import SuiteCard
from bench.errors import BenchError
from bench.io import atomic_write_text

KEY = ["model", "seed", "evaluation", "param", "statistic"]
REFERENCE_FORMAT = "neuroreg-bench/reference"
REFERENCE_VERSION = 3  # 3: the fixtures' numerics (portable level) recorded


def reference_numbers(results: pd.DataFrame) -> list[dict]:
    rows = results[KEY + ["value"]].sort_values(KEY, na_position="first").to_dict("records")
    return [
        {
            **r,
            "seed": int(r["seed"]),
            "param": None if pd.isna(r["param"]) else float(r["param"]),
            "value": float(r["value"]),
        }
        for r in rows
    ]


# --------------------------------------------------------------------------- the reference file
@dataclass(frozen=True)
class Fixture:
    """A committed checkpoint of the reference: (model, seed) and its file, relative to the reference."""

    model: str
    seed: int
    file: str
    checkpoint_hash: str


@dataclass(frozen=True)
class Reference:
    suite: str
    suite_version: int
    fixtures: list[Fixture]
    numbers: list[dict]  # evaluation numbers of the fixtures
    training_seeds: list[int]
    columns: list[dict]  # {"model", "column", "values": [one per training seed]}
    written: dict  # provenance of the machine that wrote it
    portable: str = ""  # the portable level the fixture numbers were computed in ('' : that machine's kernels)


def write_reference(path: Path, ref: Reference) -> None:
    doc = {
        "format": REFERENCE_FORMAT,
        "format_version": REFERENCE_VERSION,
        "suite": ref.suite,
        "suite_version": ref.suite_version,
        "written": ref.written,
        "evaluation": {
            "fixtures": [f.__dict__ for f in ref.fixtures],
            "portable": ref.portable,
            "numbers": ref.numbers,
        },
        "training": {"seeds": ref.training_seeds, "columns": ref.columns},
    }
    # inf is written as Infinity (Python's json reads it back)
    atomic_write_text(Path(path), json.dumps(doc, indent=1) + "\n")


def read_reference(path: Path, suite: SuiteCard) -> Reference:
    regenerate = f"regenerate it with 'bench check {suite.name} --against {path} --update'"
    try:
        doc = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise BenchError(
            f"{path}: no reference file; create it with 'bench check {suite.name} --against {path} --update'"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BenchError(f"{path}: not valid JSON ({exc}); {regenerate}") from None
    except OSError as exc:
        raise BenchError(f"{path}: cannot read ({exc.strerror})") from None
    if not isinstance(doc, dict) or doc.get("format") != REFERENCE_FORMAT:
        raise BenchError(f"{path}: not a {REFERENCE_FORMAT} file; {regenerate}")
    if doc.get("format_version") != REFERENCE_VERSION:
        raise BenchError(
            f"{path}: reference format {doc.get('format_version', 1)}, this version reads "
            f"{REFERENCE_VERSION}; {regenerate}"
        )
    if (doc.get("suite"), doc.get("suite_version")) != (suite.name, suite.version):
        raise BenchError(
            f"{path}: reference of suite {doc.get('suite')} v{doc.get('suite_version')}, not "
            f"{suite.name} v{suite.version}; {regenerate}"
        )
    try:
        ev, tr = doc["evaluation"], doc["training"]
        return Reference(
            doc["suite"],
            doc["suite_version"],
            [Fixture(**f) for f in ev["fixtures"]],
            ev["numbers"],
            tr["seeds"],
            tr["columns"],
            doc.get("written", {}),
            ev["portable"],
        )
    except (KeyError, TypeError) as exc:
        raise BenchError(f"{path}: malformed reference ({type(exc).__name__}: {exc}); {regenerate}") from None


# --------------------------------------------------------------------------- evaluation drift
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
        return (
            r["model"],
            int(r["seed"]),
            r["evaluation"],
            None if r["param"] is None else float(r["param"]),
            r["statistic"],
        )

    ref = {key(r): float(r["value"]) for r in reference}
    cur = {key(r): float(r["value"]) for r in reference_numbers(results)}
    changes = []
    for k in sorted(set(ref) | set(cur), key=lambda k: (k[0], k[1], k[2], -1 if k[3] is None else k[3], k[4])):
        reference_value = ref.get(k, math.nan)
        changes.append(
            Change(*k, reference_value, cur.get(k, math.nan), suite.check.tolerance(k[2], k[4], reference_value))
        )
    return changes


def failed(changes: list) -> bool:
    return any(c.status != "ok" for c in changes)


# --------------------------------------------------------------------------- training drift
def training_columns(per_seed: pd.DataFrame, trainings: pd.DataFrame) -> pd.DataFrame:
    """One number per (model, seed, column): the leaderboard's per-seed summaries, plus what the
    training itself records (last epoch's losses, best validation accuracy)."""
    rows = per_seed[["model", "seed", "column", "value"]].to_dict("records")
    for _, t in trainings.iterrows():
        history = json.loads(t["history"])
        last, best = history[-1], history[int(t["best_epoch"]) - 1]
        rows += [
            {"model": t["model"], "seed": int(t["seed"]), "column": "train ce (last epoch)", "value": last["train_ce"]},
            {"model": t["model"], "seed": int(t["seed"]), "column": "val acc (best epoch)", "value": best["val_acc"]},
        ]
        if t["regularizer"] != "none":
            rows.append(
                {
                    "model": t["model"],
                    "seed": int(t["seed"]),
                    "column": "train sim (last epoch)",
                    "value": last["train_sim"],
                }
            )
    return pd.DataFrame(rows, columns=["model", "seed", "column", "value"])


def reference_columns(columns: pd.DataFrame, seeds: list[int]) -> list[dict]:
    out = []
    for (model, column), g in columns.groupby(["model", "column"], sort=False):
        values = g.set_index("seed")["value"]
        out.append({"model": model, "column": column, "values": [float(values.get(s, math.nan)) for s in seeds]})
    return out


@dataclass(frozen=True)
class Drift:
    model: str
    column: str
    reference_mean: float
    reference_sd: float
    k_reference: int
    current_mean: float
    k_current: int
    allowed: float

    @property
    def delta(self) -> float:
        if self.reference_mean == self.current_mean:
            return 0.0
        return self.current_mean - self.reference_mean

    @property
    def status(self) -> str:
        if math.isnan(self.reference_mean) or self.k_reference == 0:
            return "NEW"
        if math.isnan(self.current_mean) or self.k_current == 0:
            return "MISSING"
        return "ok" if abs(self.delta) <= self.allowed else "REGRESSION"


def t_quantile(n_columns: int, k_reference: int, false_alarm: float) -> float:
    """Two-sided Student-t quantile at a family-wise false-alarm rate over ``n_columns``."""
    if k_reference < 3:
        raise BenchError(
            f"the training check needs at least 3 reference seeds (has {k_reference}); list more in the "
            "suite card's [check] reference_seeds and run --update"
        )
    return float(student_t.ppf(1 - false_alarm / (2 * max(n_columns, 1)), k_reference - 1))


def compare_training(reference: list[dict], current: pd.DataFrame, false_alarm: float, floor: float) -> list[Drift]:
    """The statistical rule of the module docstring, per (model, column) of either side."""
    ref = {
        (r["model"], r["column"]): np.asarray([v for v in r["values"] if not math.isnan(v)], float) for r in reference
    }
    cur = {k: g["value"].to_numpy(float) for k, g in current.groupby(["model", "column"], sort=False)}
    k_ref = max((len(v) for v in ref.values()), default=0)
    t = t_quantile(len(ref), k_ref, false_alarm) if ref else math.nan
    drifts = []
    for key in list(dict.fromkeys([*ref, *cur])):
        r, c = ref.get(key, np.array([])), cur.get(key, np.array([]))
        mean_r = float(r.mean()) if len(r) else math.nan
        sd_r = float(r.std(ddof=1)) if len(r) > 1 else math.nan
        mean_c = float(c.mean()) if len(c) else math.nan
        allowed = math.nan
        if len(r) > 1 and len(c):
            if math.isfinite(mean_r):
                allowed = t * sd_r * math.sqrt(1 / len(c) + 1 / len(r)) + floor * abs(mean_r)
            else:  # an infinite median (nothing found) must stay infinite
                allowed = 0.0
        drifts.append(Drift(*key, mean_r, sd_r, len(r), mean_c, len(c), allowed))
    return drifts
