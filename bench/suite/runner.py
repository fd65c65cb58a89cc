"""Suite orchestration. Work is idempotent: a trained checkpoint or a stored cell is never redone,
so re-running a finished suite does nothing and an interrupted one resumes where it stopped."""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from bench.cards import EvalSpec, ModelCard, SuiteCard
from bench.config import canonical_json
from bench.data import ImageDataset, eval_subset, load_dataset, to_float
from bench.evals import EVALUATIONS, EvalContext, Evaluation, sub_seed
from bench.evals.clean import CleanParams
from bench.runtime import Progress, Silent, device_label, package_versions, resolve_device
from bench.store import CellKey, ResultStore
from bench.train.checkpoint import load_checkpoint, load_model
from bench.train.trainer import train, trained_path


@dataclass
class Cell:
    card: ModelCard
    seed: int
    spec: EvalSpec
    evaluation: Evaluation
    n_images: int
    key: CellKey | None = None  # known once the checkpoint exists


@dataclass
class RunSummary:
    trained: list[str] = field(default_factory=list)
    evaluated: int = 0
    skipped: int = 0
    seconds: float = 0.0


def suite_evaluations(suite: SuiteCard) -> list[EvalSpec]:
    """The card's evaluations, with clean accuracy first even where the card omits it."""
    specs = list(suite.evaluations)
    if not any(s.kind == "clean" for s in specs):
        specs.insert(0, EvalSpec("clean", CleanParams()))
    return specs


@dataclass(frozen=True)
class Subset:
    x: torch.Tensor
    y: torch.Tensor
    indices: torch.Tensor  # into the test set
    digest: str


def subset_for(ds: ImageDataset, suite: SuiteCard, n: int) -> Subset:
    """The suite's fixed subset, cut to its first n images for evaluations with max_images."""
    idx, digest = eval_subset(ds.test_x, ds.test_y, suite.subset.size, suite.subset.seed)
    if n < len(idx):
        idx, digest = idx[:n], hashlib.sha256(f"{digest}:{n}".encode()).hexdigest()[:16]
    return Subset(to_float(ds.test_x[idx]), ds.test_y[idx], torch.as_tensor(idx), digest)


def plan_cells(suite: SuiteCard, n_subset: int) -> list[Cell]:
    cells = []
    for card in suite.cards:
        for seed in suite.seeds:
            for spec in suite_evaluations(suite):
                ev = EVALUATIONS.get(spec.kind)(spec.params)
                n = min(ev.max_images() or n_subset, n_subset)
                cells.append(Cell(card, seed, spec, ev, n))
    return cells


def cell_key(suite: SuiteCard, cell: Cell, checkpoints: dict, subset_hash: str) -> CellKey:
    """Keyed by the checkpoint evaluated and those of any source models it reads (transfer)."""
    hashes = [checkpoints[(name, cell.seed)][1] for name in (cell.card.name, *cell.evaluation.sources())]
    return CellKey(suite.name, suite.version, cell.card.name, cell.card.card_hash, "+".join(hashes), cell.seed,
                   cell.spec.kind, cell.evaluation.version, canonical_json(cell.spec.params), subset_hash)


def run_suite(suite: SuiteCard, store: ResultStore, workdir: Path, device: str = "auto",
              data_root: Path | None = None, progress: Callable[[], Progress] = Silent) -> RunSummary:
    t0 = time.perf_counter()
    dev = resolve_device(device)
    summary = RunSummary()
    ds = load_dataset(suite.dataset, data_root)
    n_subset = min(suite.subset.size, len(ds.test_y))

    checkpoints: dict[tuple[str, int], tuple[Path, str]] = {}  # -> (path, checkpoint hash)
    for card in suite.cards:
        for seed in suite.seeds:
            path = trained_path(workdir, card, seed)
            if path is None:
                path = train(card, seed, workdir, device, data_root, progress())
                summary.trained.append(f"{card.name}/seed{seed}")
            ckpt = load_checkpoint(path)
            store.write_training(card.name, card.card_hash, seed, ckpt)
            checkpoints[(card.name, seed)] = (path, ckpt["state_hash"])

    pending = []
    subsets: dict[int, Subset] = {}
    for cell in plan_cells(suite, n_subset):
        if cell.n_images not in subsets:
            subsets[cell.n_images] = subset_for(ds, suite, cell.n_images)
        cell.key = cell_key(suite, cell, checkpoints, subsets[cell.n_images].digest)
        if store.has(cell.key):
            summary.skipped += 1
        else:
            pending.append(cell)

    if pending:
        bar = progress()
        bar.start(f"evaluate {suite.name}", sum(c.evaluation.work(c.n_images) for c in pending))
        packages, dev_label = package_versions(), device_label(dev)
        cache: dict = {}  # crafted images shared by the cells of this run (transfer)
        for cell in pending:
            model = load_model(checkpoints[(cell.card.name, cell.seed)][0], str(dev))
            sub = subsets[cell.n_images]
            seed = sub_seed(cell.seed, cell.card.name, cell.spec.kind)
            ctx = EvalContext(dev, seed, suite.batch_size, bar, dataset=suite.dataset, indices=sub.indices,
                              data_root=data_root, training_seed=cell.seed, cache=cache,
                              models=lambda name, s=cell.seed: load_model(checkpoints[(name, s)][0], str(dev)))
            x, y = sub.x, sub.y
            t = time.perf_counter()
            output = cell.evaluation.run(model, x, y, ctx)
            store.write_cell(cell.key, regularizer=cell.card.regularizer_label, arch=cell.card.arch,
                             dataset=suite.dataset, n_images=len(y), cell_seed=seed, output=output,
                             packages=packages, device=dev_label, seconds=time.perf_counter() - t)
            summary.evaluated += 1
    summary.seconds = time.perf_counter() - t0
    return summary
