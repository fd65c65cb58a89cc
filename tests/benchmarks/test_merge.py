"""Merging cell files that cluster workers wrote into the SQLite store (bench merge). Each cell
is one transaction, so merge time is per file; measure the 10,000-file case with

    BENCH_MERGE_FILES=10000 pytest tests/benchmarks/test_merge.py --benchmark-enable

Cells are the size of a ci-suite noise cell: 4 levels x 100 images (400 per-image rows)."""

import os

import pytest
import torch

from bench.evals.base import EvalOutput, Example, Metric
from bench.evals.reporting import MetricId
from bench.store import CellKey, ResultStore
from bench.store.cellfiles import merge, write_cell_file

N_FILES = int(os.environ.get("BENCH_MERGE_FILES", "200"))
META = dict(
    regularizer="none", arch="resnet18", dataset="fmnist-mini", n_images=100, cell_seed=0,
    packages="{}", device="cpu", seconds=1.0,
)  # fmt: skip


def _cell(i: int) -> tuple[CellKey, EvalOutput]:
    key = CellKey("s", 1, f"m{i % 7}", "c", f"k{i}", i, "noise", 4, "{}", "h", "cpu-fp32")
    out = EvalOutput()
    metric = MetricId("noise-gaussian")
    for level in range(4):
        correct = torch.rand(100, generator=torch.Generator().manual_seed(i * 4 + level)) > 0.5
        out.metrics.append(Metric(metric, level / 20, "accuracy", correct.double().mean().item()))
        out.examples.append(Example(metric, level / 20, "correct", correct.double()))
    return key, out


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    work = tmp_path_factory.mktemp("cells")
    for i in range(N_FILES):
        key, out = _cell(i)
        write_cell_file(work, key, META, out)
    return work


def test_bench_merge_cell_files(benchmark, written, tmp_path):
    stores = iter(range(10**6))

    def run():
        store = ResultStore(tmp_path / f"s{next(stores)}.sqlite")
        merged, present, bad = merge(store, written)
        store.close()
        return merged, present, bad

    merged, present, bad = benchmark.pedantic(run, rounds=1, iterations=1)
    assert (merged, present, bad) == (N_FILES, 0, [])
