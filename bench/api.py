"""``bench.evaluate``: any torch model through a suite's evaluations, the way ``bench run``
evaluates the zoo (same runner, store, common random numbers and sanity checks)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from torch import nn

from bench.cards import SuiteCard, load_suite_card
from bench.config import parse
from bench.data import load_dataset
from bench.errors import BenchError
from bench.external import InputContract, module_card
from bench.store import ResultStore


def evaluate(
    model: nn.Module,
    suite: str | SuiteCard,
    *,
    name: str,
    value_range: tuple[float, float] = (0.0, 1.0),
    mean: Sequence[float] = (),
    std: Sequence[float] = (),
    device: str = "auto",
    workdir: str | Path = ".bench",
    store: str | Path | None = None,
    data_root: str | Path | None = None,
) -> pd.DataFrame:
    """Evaluate ``model`` (N x C x H x W inputs, logits out) on ``suite`` and return its rows of
    ``results.csv``. ``value_range`` is what the model takes for black and white, and
    ``mean``/``std`` a per-channel normalization it expects; both are applied before the model,
    so attacks perturb the [0,1] image. Results are stored under WORKDIR/results.sqlite keyed by
    the weights' hash and this input contract: a repeated call with the same weights reads them
    back. Zoo models an evaluation reads (a transfer source) are trained first if missing.
    Errors (a model that does not fit the dataset, non-finite logits) raise ``BenchError``
    before anything is stored."""
    from bench.evals import EVALUATIONS
    from bench.plan import RunSpec, suite_evaluations
    from bench.report.collect import collect, csv_table
    from bench.suite import run_suite

    card_suite = suite if isinstance(suite, SuiteCard) else load_suite_card(suite)
    if not name or name in card_suite.models:
        raise BenchError(
            f"bench.evaluate: name {name!r} is empty or a model of suite {card_suite.name!r}; give your model another name"
        )
    data_root = Path(data_root) if data_root else None
    ds = load_dataset(card_suite.dataset, data_root)
    c, h, w = ds.image_shape
    declared = {"channels": c, "size": [h, w], "range": list(value_range), "mean": list(mean), "std": list(std)}
    contract = parse(InputContract, declared, f"bench.evaluate({name!r})", "input")  # checked as a card's
    card = module_card(model, name, contract)
    evaluations = [EVALUATIONS.get(spec.kind)(spec.params) for spec in suite_evaluations(card_suite)]
    sources = [s for ev in evaluations if "targets" not in ev.needs for s in ev.sources()]  # targets: zoo only
    zoo = {c.name: c for c in card_suite.cards}
    source_cards = [zoo[s] for s in dict.fromkeys(sources)]
    sub = dataclasses.replace(card_suite, models=(name, *[s.name for s in source_cards]), cards=(card, *source_cards))
    run = RunSpec(sub, Path(workdir), Path(store) if store else None, device, data_root)
    with ResultStore(run.store_path) as db:
        summary = run_suite(run, db, seeds=card_suite.seeds[:1], only=(name,))
        mine = [cell for cell in summary.cells if cell.card.name == name]
        return csv_table(collect(sub, db, mine).results).reset_index(drop=True)
