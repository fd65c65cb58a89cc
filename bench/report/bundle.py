"""A report folder as data: beside what a leaderboard shows, everything it is computed from, so
that ``bench analyze DIR`` recomputes every table and interval without the store (results as
content, as RobustBench publishes them).

- ``results.csv``: one row per number (the long table; README, "What bench run quick prints").
- ``outcomes.csv.gz``: the per-image values behind them: ``model, seed, evaluation, param,
  statistic, image, value``, where ``image`` is the position in the suite's evaluation subset
  (its hash is in results.csv), ``statistic`` ``accuracy`` (1/0 correct), ``distance`` (a minimal
  perturbation, ``inf`` where none was found; ``distance:ATTACK`` per attack), ``winner`` (the
  index of the attack that found the smallest, -1 a clean error, -2 none) or ``mean accuracy``.
  Gzip without a timestamp, so the same outcomes give the same bytes.
- ``cells.json``, ``trainings.json``: the store's rows of the evaluated cells and trainings
  (parameters, notes, sanity flags, provenance; histories and layer weights).
- ``suite.toml``: the suite card as it was when the report was written (endpoints included).
- ``labels.csv``: the label of each image of the evaluation subset (``image``, ``label``), for
  the per-class analyses (their tables: ``per_class.csv``, and ``kappa.csv`` for error
  consistency between models).
- ``bundle.json``: what the folder is (format, suite, version) and which of these it holds."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from bench.cards import load_suite_card
from bench.errors import BenchError
from bench.evals.reporting import MetricId
from bench.io import atomic_write_bytes, atomic_write_text
from bench.report.collect import CSV_COLUMNS, RESULT_COLUMNS, SuiteResults, order_trainings
from bench.report.escape import csv_safe

FORMAT = "neuroreg-bench/report"
VERSION = 1
OUTCOME_COLUMNS = ["model", "seed", "evaluation", "param", "statistic", "image", "value"]


def _split(label: str) -> tuple[str, str]:
    head, _, tail = label.partition(":")
    return head, tail


def results_from_csv(flat: pd.DataFrame) -> pd.DataFrame:
    """results.csv back to the in-memory table: 'transfer-linf:SOURCE' and 'median:ATTACK' split."""
    results = flat.copy()
    results["metric"], results["source"] = zip(*[_split(e) for e in flat["evaluation"]]) if len(flat) else ([], [])
    results["statistic"], results["attack"] = zip(*[_split(s) for s in flat["statistic"]]) if len(flat) else ([], [])
    for col in ("source", "attack"):
        results[col] = results[col].fillna("")
    return results[RESULT_COLUMNS]


def outcomes_table(examples: dict) -> pd.DataFrame:
    frames = []
    for (model, seed, metric, param, statistic, attack), values in examples.items():
        n = len(values)
        frames.append(
            pd.DataFrame(
                {
                    "model": [model] * n,
                    "seed": [seed] * n,
                    "evaluation": [metric.label] * n,
                    "param": [np.nan if param is None else param] * n,
                    "statistic": [f"{statistic}:{attack}" if attack else statistic] * n,
                    "image": np.arange(n),
                    "value": np.asarray(values, float),
                }
            )
        )
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=OUTCOME_COLUMNS)


def examples_from(outcomes: pd.DataFrame) -> dict:
    out = {}
    for (model, seed, evaluation, param, statistic), g in outcomes.groupby(
        ["model", "seed", "evaluation", "param", "statistic"], sort=False, dropna=False
    ):
        name, source = _split(evaluation)
        stat, attack = _split(statistic)
        key_param = None if isinstance(param, float) and math.isnan(param) else float(param)
        out[(model, int(seed), MetricId(name, source), key_param, stat, attack)] = g.sort_values("image")[
            "value"
        ].to_numpy(float)
    return out


def write_bundle(data: SuiteResults, folder: Path) -> None:
    """The data files of a report folder (results.csv included) into ``folder``."""
    from bench.report.collect import csv_table

    folder = Path(folder)
    csv_safe(csv_table(data.results)).to_csv(folder / "results.csv", index=False)
    if data.examples:  # a report re-rendered from a folder that never had them gets none
        outcomes_table(data.examples).to_csv(
            folder / "outcomes.csv.gz", index=False, compression={"method": "gzip", "mtime": 0}
        )
    atomic_write_text(folder / "cells.json", json.dumps(data.cells.to_dict("records"), indent=0) + "\n")
    atomic_write_text(folder / "trainings.json", json.dumps(data.trainings.to_dict("records"), indent=0) + "\n")
    if data.suite.path and Path(data.suite.path).is_file():
        atomic_write_bytes(folder / "suite.toml", Path(data.suite.path).read_bytes())
    if data.labels is not None:
        labels = pd.DataFrame({"image": range(len(data.labels)), "label": data.labels})
        labels.to_csv(folder / "labels.csv", index=False)
    manifest = {
        "format": FORMAT,
        "format_version": VERSION,
        "suite": data.suite.name,
        "suite_version": data.suite.version,
        "files": sorted(p.name for p in folder.iterdir() if p.name in DATA_FILES),
        **({"num_classes": data.num_classes} if data.labels is not None else {}),
    }
    atomic_write_text(folder / "bundle.json", json.dumps(manifest, indent=1) + "\n")


DATA_FILES = {"results.csv", "outcomes.csv.gz", "cells.json", "trainings.json", "suite.toml", "labels.csv"}


def read_bundle(folder: Path, suite: str | None = None) -> SuiteResults:
    """A report folder's data. ``suite``: the suite card to read it with where the folder keeps
    none (a report written before bundles); the folder's own suite.toml otherwise."""
    folder = Path(folder)
    if not (folder / "results.csv").is_file():
        raise BenchError(f"{folder}: no results.csv here; pass a report folder (reports/SUITE)")
    manifest = {}
    if (folder / "bundle.json").is_file():
        manifest = json.loads((folder / "bundle.json").read_text())
        if manifest.get("format") != FORMAT or manifest.get("format_version", 0) > VERSION:
            raise BenchError(f"{folder / 'bundle.json'}: not a {FORMAT} manifest this version reads")
    flat = pd.read_csv(folder / "results.csv")
    missing = set(CSV_COLUMNS) - set(flat.columns)
    if missing:
        raise BenchError(f"{folder / 'results.csv'}: lacks columns {sorted(missing)}; it is not a bench report")
    if suite is None:
        if not (folder / "suite.toml").is_file():
            raise BenchError(f"{folder}: no suite.toml here (an older report); pass --suite NAME")
        card = load_suite_card(str(folder / "suite.toml"))
        card = dataclasses.replace(card, name=manifest.get("suite") or str(flat["suite"].iloc[0]))
    else:
        card = load_suite_card(suite)
    results = results_from_csv(flat)
    examples = {}
    if (folder / "outcomes.csv.gz").is_file():
        examples = examples_from(pd.read_csv(folder / "outcomes.csv.gz"))
    cells = pd.DataFrame(_json_rows(folder / "cells.json"))
    trainings = pd.DataFrame(_json_rows(folder / "trainings.json"))
    labels, num_classes = None, int(manifest.get("num_classes", 0))
    if (folder / "labels.csv").is_file() and num_classes:
        labels = pd.read_csv(folder / "labels.csv")["label"].to_numpy()
    else:  # a folder written before labels were kept: the suite's subset, if its dataset is here
        labels, num_classes = subset_labels(card, set(flat["subset_hash"]))
    data = SuiteResults(card, results, cells, order_trainings(trainings, card), examples, [])
    return dataclasses.replace(data, labels=labels, num_classes=num_classes)


def subset_labels(card, digests: set[str]) -> tuple[np.ndarray | None, int]:
    """The labels of the suite's evaluation subset drawn again from its dataset (no evaluation),
    accepted only where the subset's hash is one the results name; (None, 0) without the data."""
    from bench.data import load_dataset
    from bench.plan import subset_for, subset_size

    try:
        ds = load_dataset(card.dataset)
        subset = subset_for(ds, card, subset_size(ds, card))
    except (BenchError, OSError):
        return None, 0
    return (subset.y.numpy(), ds.num_classes) if subset.digest in digests else (None, 0)


def _json_rows(path: Path) -> list[dict]:
    return json.loads(path.read_text()) if path.is_file() else []


def reproduction(published: pd.DataFrame, recomputed: pd.DataFrame) -> str:
    """Whether recomputed intervals equal the published ones (to 1e-9), contrast by contrast."""
    import math

    key = ["model", "reference", "evaluation", "param", "summary", "scope", "seed"]
    numbers = ["delta", "ci_low", "ci_high", "p_value", "p_holm"]
    if not set(key + numbers) <= set(published.columns):
        return f"deltas.csv predates these columns ({', '.join(numbers)}): nothing to compare"
    a = published[published["scope"] == "training procedure"].set_index(key[:5])[numbers]
    b = recomputed[recomputed["scope"] == "training procedure"].set_index(key[:5])[numbers]
    common = a.index.intersection(b.index)
    differ = [
        k
        for k in common
        for c in numbers
        if not (
            (math.isnan(a.loc[k, c]) and math.isnan(b.loc[k, c]))
            or math.isclose(a.loc[k, c], b.loc[k, c], rel_tol=1e-9, abs_tol=1e-12)
        )
    ]
    missing = len(a.index.difference(b.index)) + len(b.index.difference(a.index))
    verdict = "reproduce" if not differ and not missing else "do NOT reproduce"
    return (
        f"recomputed from the folder: {len(common)} contrasts {verdict} deltas.csv "
        f"({len(set(differ))} differ, {missing} on one side only)"
    )
