"""Read a planned suite's cells from the store: the long results table, per-image outcomes and
training records. The only module of bench.report that touches the store."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bench.cards import SuiteCard
from bench.config import canonical_json
from bench.plan import Cell
from bench.store import ResultStore

CSV_COLUMNS = [
    "model",
    "regularizer",
    "arch",
    "seed",
    "dataset",
    "suite",
    "suite_version",
    "evaluation",
    "param",
    "statistic",
    "value",
    "n_images",
    "subset_hash",
    "card_hash",
    "checkpoint_hash",
    "device",
]
# results in memory: the metric identity structured (metric name, source model, statistic, attack)
RESULT_COLUMNS = [
    "model",
    "regularizer",
    "arch",
    "seed",
    "dataset",
    "suite",
    "suite_version",
    "metric",
    "source",
    "param",
    "statistic",
    "attack",
    "value",
    "n_images",
    "subset_hash",
    "card_hash",
    "checkpoint_hash",
    "device",
]


@dataclass
class SuiteResults:
    suite: SuiteCard
    results: pd.DataFrame  # long format, RESULT_COLUMNS
    cells: pd.DataFrame  # one row per cell (provenance, notes)
    trainings: pd.DataFrame  # one row per (model, seed) actually evaluated
    # per-image outcomes: (model, seed, MetricId, param, statistic, attack) -> values over the evaluation images
    examples: dict[tuple, np.ndarray] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    labels: np.ndarray | None = None  # of the evaluation subset's images, in order (per-class analyses)
    num_classes: int = 0


def csv_table(results: pd.DataFrame) -> pd.DataFrame:
    """results.csv's flat form: 'transfer-linf:SOURCE' and 'median:ATTACK' labels."""
    flat = results.copy()
    flat["evaluation"] = [f"{m}:{s}" if s else m for m, s in zip(results["metric"], results["source"])]
    flat["statistic"] = [f"{st}:{a}" if a else st for st, a in zip(results["statistic"], results["attack"])]
    return flat[CSV_COLUMNS]


def collect(
    suite: SuiteCard, store: ResultStore, plan: list[Cell], labels: np.ndarray | None = None, num_classes: int = 0
) -> SuiteResults:
    """The stored cells of a plan (bench.plan), in plan order; unkeyed or unstored cells
    are listed as missing. ``labels``: the evaluation subset's, for the per-class analyses."""
    results, cells, missing, examples = [], [], [], {}
    for c in plan:
        row = store.cell(c.key.digest) if c.key is not None else None
        if row is None:
            missing.append(f"{c.card.name} seed {c.seed} {c.spec.kind} {canonical_json(c.spec.params)}")
            continue
        cells.append(row)
        for m in store.cell_metrics(row["key"]):
            results.append({**{k: row.get(k) for k in RESULT_COLUMNS}, **m})
        for (metric, param, statistic, attack), values in store.cell_examples(row["key"]).items():
            examples[(c.card.name, c.seed, metric, param, statistic, attack)] = values
    results = pd.DataFrame(results, columns=RESULT_COLUMNS)
    evaluated = {(r["model"], r["checkpoint_hash"].split("+")[0]) for r in cells}  # transfer adds its source's hash
    trainings = order_trainings(pd.DataFrame(store.trainings(evaluated)), suite)
    return SuiteResults(suite, results, pd.DataFrame(cells), trainings, examples, missing, labels, num_classes)


def order_trainings(trainings: pd.DataFrame, suite: SuiteCard) -> pd.DataFrame:
    """In the suite's model order and by seed, however they were recorded."""
    if trainings.empty:
        return trainings
    order = {c.name: k for k, c in enumerate(suite.cards)}
    trainings = trainings.sort_values(["model", "seed"], key=lambda c: c.map(order) if c.name == "model" else c)
    return trainings.reset_index(drop=True)
