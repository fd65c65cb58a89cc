"""Where `bench run quick` spends its time, recorded as a benchmark (tox -e perf): the phases'
wall seconds (setup, train, evaluate), and inside them each card's training seconds and each
evaluation kind's cell seconds, summed over seeds (worker time: with two workers the phases'
wall time is about half their sum). A regression in any of them shows in the saved benchmark."""

import sqlite3

import pytest

from bench.cards import load_suite_card
from bench.executors import make_executor, merged_options
from bench.plan import RunSpec
from bench.store import ResultStore
from bench.suite import run_suite


def test_bench_quick_suite_phases(benchmark, tmp_path):
    if benchmark.disabled:
        pytest.skip("the quick suite takes minutes: timed with --benchmark-enable (tox -e perf)")
    suite = load_suite_card("quick")
    workdir = tmp_path / "work"

    def run():
        with ResultStore(workdir / "results.sqlite") as store:
            run = RunSpec(suite, workdir, store.path, "cpu")
            executor = make_executor(merged_options(suite), run)
            try:
                return run_suite(run, store, executor)
            finally:
                executor.close()

    summary = benchmark.pedantic(run, rounds=1)
    assert summary.evaluated == len(summary.cells) and len(summary.trained) == len(suite.models) * len(suite.seeds)
    conn = sqlite3.connect(workdir / "results.sqlite")
    training = dict(conn.execute("SELECT model, SUM(seconds) FROM trainings GROUP BY model"))
    cells = dict(conn.execute("SELECT evaluation, SUM(seconds) FROM cells GROUP BY evaluation"))
    conn.close()
    benchmark.extra_info.update(
        {
            **{f"wall {k} s": round(v, 1) for k, v in summary.phases.items()},
            **{f"train {k} s": round(v, 1) for k, v in training.items()},
            **{f"cells {k} s": round(v, 1) for k, v in cells.items()},
        }
    )
    print(benchmark.extra_info)
