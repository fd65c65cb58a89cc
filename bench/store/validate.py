"""What a stored cell may hold: a cell file from a worker (or anyone) is data and is checked
before it reaches the store. Types and bounds come from strict typed models; the numbers must be
in range (accuracies and shares in [0, 1], finite, or NaN where a statistic is undefined) and
consistent with their per-image values (an accuracy is the mean of its 0/1 outcomes, one per
evaluation image)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Annotated

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError

from bench.evals.base import EvalOutput

BigInt = Annotated[int, Field(ge=0, le=2**63 - 1)]  # what SQLite's INTEGER holds
Text = Annotated[str, Field(max_length=1_000_000)]
_STRICT = ConfigDict(extra="forbid", strict=True)

# statistics that are fractions of images (or of attack wins): values in [0, 1]
FRACTIONS = frozenset({"accuracy", "found", "wins", "mean accuracy", "optimality", "zero gradient", "nan gradient"})


def is_fraction(statistic: str) -> bool:
    """Also the accuracies of a convergence rerun ('accuracy at 0.5 budget')."""
    return statistic in FRACTIONS or statistic.startswith("accuracy at ")


@dataclass(frozen=True)
class KeyModel:
    __pydantic_config__ = _STRICT
    suite: Text
    suite_version: BigInt
    model: Text
    card_hash: Text
    checkpoint_hash: Text
    seed: BigInt
    evaluation: Text
    eval_version: BigInt
    params: Text
    subset_hash: Text
    numerics: Text


@dataclass(frozen=True)
class MetaModel:
    __pydantic_config__ = _STRICT
    regularizer: Text
    arch: Text
    dataset: Text
    n_images: Annotated[int, Field(ge=1, le=100_000_000)]
    cell_seed: BigInt
    packages: Text
    device: Text
    seconds: Annotated[float, Field(ge=0, allow_inf_nan=False)]
    provenance: Text = "{}"


@dataclass(frozen=True)
class TrainingModel:
    """A training record (no weights): what the leaderboard's training columns and a plan's
    checkpoint hashes read."""

    __pydantic_config__ = _STRICT
    model: Text
    card_hash: Text
    seed: BigInt
    checkpoint_hash: Text
    regularizer: Text
    best_epoch: Annotated[int, Field(ge=0, le=1_000_000)]
    layer_weights: Text
    history: Text
    target: Text
    seconds: Annotated[float, Field(ge=0, allow_inf_nan=False)]
    device: Text
    packages: Text
    numerics: Text
    provenance: Text
    taps: Text


def typed_problems(key: dict, meta: dict) -> list[str]:
    """The key and meta of a cell file against their typed models: one line per field."""
    return _problems("key", KeyModel, key) + _problems("meta", MetaModel, meta)


def training_problems(row: dict) -> list[str]:
    """A training record against its typed model; its JSON columns must parse."""
    problems = _problems("training", TrainingModel, row)
    for column in ("layer_weights", "history", "taps", "packages", "provenance"):
        if not problems:
            try:
                json.loads(row[column])
            except (json.JSONDecodeError, RecursionError):
                problems.append(f"training.{column}: not JSON")
    return problems


def _problems(name: str, model: type, data) -> list[str]:
    try:
        TypeAdapter(model).validate_json(json.dumps(data))
    except ValidationError as exc:
        return [f"{name}.{'.'.join(str(p) for p in e['loc']) or name}: {e['msg']}" for e in exc.errors()]
    return []


def _label(number) -> str:
    """'noise-gaussian accuracy at 0.5': a Metric or Example, for a problem's line."""
    return f"{number.metric.label} {number.statistic}" + (f" at {number.param:g}" if number.param is not None else "")


def output_problems(output: EvalOutput, n_images: int) -> list[str]:
    """Ranges, finiteness and metric-vs-example consistency of one cell's numbers."""
    problems = []
    for m in output.metrics:
        label = _label(m)
        if m.param is not None and not math.isfinite(m.param):
            problems.append(f"{label}: its grid point is not finite")
        if is_fraction(m.statistic) and not math.isnan(m.value) and not 0.0 <= m.value <= 1.0:
            problems.append(f"{label}: {m.value!r} is outside [0, 1]")
    values = {(m.metric, m.param, m.statistic, m.attack): m.value for m in output.metrics}
    for e in output.examples:
        if e.statistic != "accuracy":
            continue
        label = _label(e)
        if len(e.values) != n_images:
            problems.append(f"{label}: {len(e.values)} per-image outcomes for {n_images} images")
            continue
        if not bool(((e.values == 0) | (e.values == 1)).all()):
            problems.append(f"{label}: per-image outcomes other than 0 and 1")
            continue
        metric = values.get((e.metric, e.param, e.statistic, e.attack))
        if metric is not None and not math.isclose(metric, float(e.values.double().mean()), abs_tol=1e-9):
            problems.append(f"{label}: {metric!r} is not the mean of its {n_images} per-image outcomes")
    return problems
