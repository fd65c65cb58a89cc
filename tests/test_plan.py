"""The planner: a plan trains, evaluates and writes nothing; before a run every training is
missing and no cell can be keyed; after it nothing is missing or pending, and every cell is
stored under the key the plan gives it. Workers receive their cells (no re-planning), and a
worker whose evaluation images differ from the planner's refuses to compute."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from bench.cards import load_suite_card
from bench.errors import BenchError
from bench.executors import SerialExecutor
from bench.plan import RunSpec, plan
from bench.store import ResultStore
from bench.suite import run_suite


def tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(root)).encode() + path.read_bytes())
    return h.hexdigest()


def test_a_plan_before_and_after_a_run(cards):
    suite = load_suite_card("tiny")
    run = RunSpec(suite, cards / "work")
    with ResultStore(run.store_path) as store:
        before = tree_digest(cards / "work")
        first = plan(run, store)
        assert tree_digest(cards / "work") == before  # planning writes nothing
        n_cells = len(suite.models) * len(suite.seeds) * (len(suite.evaluations) + 1)  # clean first
        assert len(first.cells) == n_cells and first.stored == 0
        assert [(c.name, s) for c, s in first.missing] == [(m, 0) for m in suite.models]
        assert first.pending == [] and all(c.key is None for c in first.cells)

        summary = run_suite(run, store)
        assert summary.evaluated == n_cells and len(summary.trained) == len(first.missing)

        after = plan(run, store)
        assert after.missing == [] and after.pending == [] and after.stored == n_cells
        assert [c.key for c in after.cells] == [c.key for c in summary.cells]
        assert all(store.has(c.key) for c in after.cells)
        only_one = plan(run, store, only=("tiny-none",))
        assert only_one.pending == []  # `only` narrows what is pending, never what is stored

        again = run_suite(run, store)  # a finished suite: nothing trained, nothing evaluated
        assert again.trained == [] and again.evaluated == 0 and again.skipped == n_cells


def test_a_worker_computes_the_cell_it_is_given_and_refuses_other_images(cards):
    import dataclasses

    from bench.executors.jobs import cell_job

    suite = load_suite_card("tiny")
    run = RunSpec(suite, cards / "work", threads=0)
    with ResultStore(run.store_path) as store:
        SerialExecutor(run).train([(c, 0) for c in suite.cards])
        todo = plan(run, store)
    cell = todo.pending[0]
    needed = {(cell.card.name, 0): todo.checkpoints[(cell.card.name, 0)]}
    digest = cell_job(run, cell, needed)
    assert digest == cell.key.digest and (cards / "work" / "cells" / f"{digest}.json").is_file()

    other = dataclasses.replace(cell, key=dataclasses.replace(cell.key, subset_hash="0" * 16))
    with pytest.raises(BenchError, match="evaluation images .* differ from the planner's"):
        cell_job(run, other, needed)
