"""Running a suite: plan, train the missing models, plan again, evaluate the pending cells,
summarise, on whichever executor the run was given (bench.executors; serial by default). Work is
idempotent: a trained checkpoint or a stored cell is never redone, so re-running a finished
suite does nothing and an interrupted one resumes where it stopped. The units of work themselves
live in bench.compute."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.data import load_dataset
from bench.executors import SerialExecutor
from bench.numerics import configure_device
from bench.plan import Cell, Checkpoints, Plan, RunSpec, external_checkpoints, pinned_checkpoints, plan
from bench.store import ResultStore
from bench.train.checkpoint import load_checkpoint


@dataclass
class RunSummary:
    trained: list[str] = field(default_factory=list)
    evaluated: int = 0
    skipped: int = 0
    seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)  # wall seconds: setup, train, evaluate
    plan: Plan | None = None  # the plan after training: every cell of the suite, keyed where possible

    @property
    def cells(self) -> list[Cell]:
        return self.plan.cells

    @property
    def checkpoints(self) -> Checkpoints:
        return self.plan.checkpoints


def run_suite(
    run: RunSpec,
    store: ResultStore,
    executor=None,
    *,
    pinned: dict[tuple[str, int], Path] | None = None,
    seeds: tuple[int, ...] | None = None,
    only: tuple[str, ...] | None = None,
) -> RunSummary:
    """Train the missing models and evaluate the pending cells of ``seeds`` (default: the
    suite's) on ``executor`` (bench.executors; default: serial in this process). ``pinned``:
    (model, seed) -> checkpoint file used as is. ``only``: evaluate these models' cells alone."""
    t0 = time.perf_counter()
    executor = executor or SerialExecutor(run)
    configure_device(run.dev, run.deterministic)
    seeds = tuple(seeds if seeds is not None else run.suite.seeds)
    ds = load_dataset(run.suite.dataset, run.data_root)
    known = {**pinned_checkpoints(run.suite, pinned or {}), **external_checkpoints(run.suite, ds, seeds, run.dev)}
    todo = plan(run, store, seeds=seeds, known=known, only=only)
    summary = RunSummary(phases={"setup": time.perf_counter() - t0})
    if todo.missing:
        store.check_writable()  # before hours of training, not after
        executor.train(todo.missing)
        summary.trained = [f"{card.name}/seed{seed}" for card, seed in todo.missing]
        todo = plan(run, store, seeds=seeds, known=known, only=only)
    record_trainings(todo, store)
    summary.phases["train"] = time.perf_counter() - t0 - summary.phases["setup"]
    if todo.pending:
        store.check_writable()
        summary.evaluated = executor.evaluate(todo, store)
    summary.plan, summary.skipped = todo, todo.stored
    summary.seconds = time.perf_counter() - t0
    summary.phases["evaluate"] = summary.seconds - summary.phases["setup"] - summary.phases["train"]
    return summary


def record_trainings(todo: Plan, store: ResultStore) -> None:
    """Each checkpoint file of the plan's zoo models in the store's training records (the
    leaderboard's training columns), once."""
    cards = {c.name: c for c in todo.run.suite.cards}
    for (name, seed), (path, state_hash) in todo.checkpoints.items():
        card = cards[name]
        if card.external or path is None:
            continue  # not trained here, or known only from the store's record
        if not store.has_training(name, card.card_hash, seed, state_hash):
            store.write_training(name, card.card_hash, seed, load_checkpoint(path))
