"""Read a suite's newest cells from the store: the long results table, per-image outcomes and
training records. The only module of bench.report that touches the store."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bench.cards import SuiteCard
from bench.config import canonical_json
from bench.evals import EVALUATIONS
from bench.store import ResultStore
from bench.suite.runner import suite_evaluations

CSV_COLUMNS = ["model", "regularizer", "arch", "seed", "dataset", "suite", "suite_version", "evaluation", "param",
               "statistic", "value", "n_images", "subset_hash", "card_hash", "checkpoint_hash", "device"]


@dataclass
class SuiteResults:
    suite: SuiteCard
    results: pd.DataFrame  # long format, CSV_COLUMNS
    cells: pd.DataFrame  # one row per cell (provenance, notes)
    trainings: pd.DataFrame  # one row per (model, seed) actually evaluated
    # per-image outcomes: (model, seed, metric, param) -> values over the evaluation images
    examples: dict[tuple[str, int, str, float | None], np.ndarray] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)


def collect(suite: SuiteCard, store: ResultStore) -> SuiteResults:
    """The newest stored cell for every (model, seed, evaluation) the suite card asks for."""
    results, cells, missing, examples = [], [], [], {}
    for card in suite.cards:
        for seed in suite.seeds:
            for spec in suite_evaluations(suite):
                params = canonical_json(spec.params)
                version = EVALUATIONS.get(spec.kind).version
                row = next(store.rows(
                    "SELECT * FROM cells WHERE suite=? AND suite_version=? AND model=? AND card_hash=? AND seed=? "
                    "AND evaluation=? AND eval_version=? AND params=? ORDER BY finished_at DESC LIMIT 1",
                    (suite.name, suite.version, card.name, card.card_hash, seed, spec.kind, version, params)), None)
                if row is None:
                    missing.append(f"{card.name} seed {seed} {spec.kind} {params}")
                    continue
                cell = dict(row)
                cells.append(cell)
                for m in store.rows("SELECT metric, param, statistic, value FROM metrics WHERE key=?", (cell["key"],)):
                    results.append({**{c: cell.get(c) for c in CSV_COLUMNS}, "evaluation": m["metric"],
                                    "param": m["param"], "statistic": m["statistic"], "value": m["value"]})
                for (metric, param), values in store.cell_examples(cell["key"]).items():
                    examples[(card.name, seed, metric, param)] = values
    results = pd.DataFrame(results, columns=CSV_COLUMNS)
    trainings = pd.DataFrame([dict(r) for r in store.rows("SELECT * FROM trainings")])
    if not trainings.empty:
        evaluated = results["checkpoint_hash"].str.split("+").str[0]  # transfer cells add their source's hash
        used = set(zip(results["model"], evaluated))
        trainings = trainings[[(m, h) in used for m, h in zip(trainings["model"], trainings["checkpoint_hash"])]]
        trainings = trainings.reset_index(drop=True)
    return SuiteResults(suite, results, pd.DataFrame(cells), trainings, examples, missing)
