"""Suite orchestration. Work is idempotent: a trained checkpoint or a stored cell is never redone,
so re-running a finished suite does nothing and an interrupted one resumes where it stopped.

A run is planned first: every (model, seed) resolves to a checkpoint (trained here, pinned by
the caller, or found in the workdir or the store) and every cell gets its content key, so the
leaderboard reads exactly the cells of this plan."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from bench.cards import EvalSpec, ModelCard, SuiteCard, suite_card_hash
from bench.codestate import Clock
from bench.config import canonical_json
from bench.data import ImageDataset, eval_subset, load_dataset, to_float, train_val_split
from bench.errors import BenchError, CheckpointError
from bench.evals import EVALUATIONS, EvalContext, EvalOutput, Evaluation
from bench.evals.base import DataFiles, SourceModels, predict
from bench.evals.clean import CleanParams
from bench.evals.reporting import ReportSpec
from bench.evals.similarity import Targets
from bench.numerics import (
    Numerics,
    configure_device,
    device_label,
    evaluation_numerics,
    package_versions,
    provenance,
    training_numerics,
)
from bench.runtime import Progress, Silent, resolve_device
from bench.seeds import sub_seed
from bench.store import CellKey, ResultStore
from bench.train.checkpoint import load_checkpoint, load_model
from bench.train.regularizer import card_target
from bench.train.trainer import train, trained_path


@dataclass
class Cell:
    card: ModelCard
    seed: int
    spec: EvalSpec
    evaluation: Evaluation
    n_images: int
    spec_index: int = 0  # position of its evaluation in the suite's (clean first): how a worker finds it
    key: CellKey | None = None  # known once the checkpoint exists


@dataclass
class RunSummary:
    trained: list[str] = field(default_factory=list)
    evaluated: int = 0
    skipped: int = 0
    seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)  # wall seconds: setup, train, evaluate
    cells: list[Cell] = field(default_factory=list)  # the plan: every cell of the suite, keyed where possible
    checkpoints: dict = field(default_factory=dict)  # (model, seed) -> (path or None, checkpoint hash)


def suite_evaluations(suite: SuiteCard) -> list[EvalSpec]:
    """The card's evaluations, with clean accuracy first even where the card omits it."""
    specs = list(suite.evaluations)
    if not any(s.kind == "clean" for s in specs):
        specs.insert(0, EvalSpec("clean", CleanParams()))
    return specs


def report_specs(suite: SuiteCard) -> list[ReportSpec]:
    """How each of the suite's evaluations (clean first) is reported, as it declares."""
    return [EVALUATIONS.get(s.kind)(s.params).report() for s in suite_evaluations(suite)]


@dataclass(frozen=True)
class Subset:
    x: torch.Tensor
    y: torch.Tensor
    indices: torch.Tensor  # into the test set
    digest: str


def evaluation_pool(ds: ImageDataset, suite: SuiteCard) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(images, labels, their indices in their split) the suite's subset is drawn from: the test
    split, or the validation split its zoo models hold out (which they must share)."""
    if suite.subset.split == "test":
        return ds.test_x, ds.test_y, torch.arange(len(ds.test_y))
    splits = {(c.trainer.val_fraction, c.trainer.split_seed) for c in suite.cards if not c.external}
    if len(splits) != 1:
        raise BenchError(
            f"suite {suite.name!r}: subset.split = 'validation' needs zoo models that share one validation "
            f"split (trainer.val_fraction, split_seed); they have {sorted(splits)}"
        )
    ((fraction, seed),) = splits
    _, val = train_val_split(len(ds.train_y), fraction, seed)
    return ds.train_x[val], ds.train_y[val], val


def subset_size(ds: ImageDataset, suite: SuiteCard) -> int:
    """How many images the suite evaluates: its subset size, at most its split's."""
    return min(suite.subset.size, len(evaluation_pool(ds, suite)[1]))


def subset_for(ds: ImageDataset, suite: SuiteCard, n: int) -> Subset:
    """The suite's fixed subset, cut to its first n images for evaluations with max_images."""
    x, y, pool = evaluation_pool(ds, suite)
    idx, digest = eval_subset(x, y, suite.subset.size, suite.subset.seed)
    if n < len(idx):
        idx, digest = idx[:n], hashlib.sha256(f"{digest}:{n}".encode()).hexdigest()[:16]
    return Subset(to_float(x[idx]), y[idx], torch.as_tensor(pool[idx]), digest)


def plan_cells(suite: SuiteCard, n_subset: int, seeds: tuple[int, ...] | None = None) -> list[Cell]:
    """Every (model, seed, evaluation) cell; an external model has one seed and no cells of
    evaluations that read what only training produces (similarity to the target: layer weights, taps)."""
    cells = []
    for card in suite.cards:
        for seed in card.seeds_of(tuple(seeds if seeds is not None else suite.seeds)):
            for k, spec in enumerate(suite_evaluations(suite)):
                ev = EVALUATIONS.get(spec.kind)(spec.params)
                if card.external and "targets" in ev.needs:
                    continue
                n = min(ev.max_images() or n_subset, n_subset)
                cells.append(Cell(card, seed, spec, ev, n, k))
    return cells


def perturbation_seed(suite: SuiteCard) -> int:
    """The seed of every perturbation draw in a suite: one per suite, never per model or training
    seed (common random numbers), refined per evaluation, grid point and image."""
    return sub_seed("perturbations", suite.name)


def cell_key(suite: SuiteCard, cell: Cell, checkpoints: dict, subset_hash: str, numerics: Numerics) -> CellKey | None:
    """Keyed by the checkpoint evaluated and those of any source models it reads (transfer);
    None while one of them is unknown."""
    names = (cell.card.name, *cell.evaluation.sources())
    if any((name, cell.seed) not in checkpoints for name in names):
        return None
    hashes = [checkpoints[(name, cell.seed)][1] for name in names]
    return CellKey(
        suite.name,
        suite.version,
        cell.card.name,
        cell.card.card_hash,
        "+".join(hashes),
        cell.seed,
        cell.spec.kind,
        cell.evaluation.version,
        canonical_json(cell.spec.params),
        subset_hash,
        numerics.label,
    )


Checkpoints = dict[tuple[str, int], tuple[Path, str]]  # (model, seed) -> (path, checkpoint hash)


def evaluated_model(card, path: Path, dev: torch.device) -> torch.nn.Module:
    """The network a cell evaluates: a zoo checkpoint, or an external card's model behind its
    input contract."""
    return card.load(dev) if card.external else load_model(path, str(dev))


def external_checkpoints(
    suite: SuiteCard, ds: ImageDataset, seeds: tuple[int, ...], dev: torch.device, probe: bool = True
) -> Checkpoints:
    """Each external model loaded (its 'checkpoint hash' is its weights' hash) and checked
    against the suite's dataset: the contract always, and with ``probe`` (before an evaluation)
    the output shape and dtype and finite logits on the evaluation images. A model that does not
    fit fails here, with nothing stored."""
    from bench.external.probe import check_contract, check_outputs

    out: Checkpoints = {}
    externals = [c for c in suite.cards if c.external]
    x = subset_for(ds, suite, subset_size(ds, suite)).x if externals and probe else None
    for card in externals:
        check_contract(card, ds)
        model = card.load(dev)
        if probe:
            check_outputs(card, model, x, ds.num_classes, suite.batch_size)
        for seed in card.seeds_of(seeds):
            out[(card.name, seed)] = (Path(card.path), card.weights_hash(model))
    return out


def stored_external_checkpoints(suite: SuiteCard, store: ResultStore, seeds: tuple[int, ...]) -> Checkpoints:
    """For read-only commands: each external model's weights hash as an evaluation recorded it,
    found through the card hash (its file's sha256); no model is loaded, so no author's code
    runs. A model never evaluated has no entry (its cells are not stored)."""
    out: Checkpoints = {}
    for card in (c for c in suite.cards if c.external):
        weights = store.evaluated_weights(card.name, card.card_hash)
        if weights is not None:
            for seed in card.seeds_of(seeds):
                out[(card.name, seed)] = (Path(card.path), weights)
    return out


def pinned_checkpoints(suite: SuiteCard, files: dict[tuple[str, int], Path]) -> Checkpoints:
    """Checkpoints given by the caller (the committed ones of a regression reference) instead of
    trained ones; each must have been trained from the suite's current card."""
    cards = {c.name: c for c in suite.cards}
    out = {}
    for (name, seed), path in files.items():
        ckpt = load_checkpoint(path)
        if name not in cards:
            raise BenchError(f"{path}: a checkpoint of {name!r}, which is not a model of suite {suite.name!r}")
        if ckpt["card_hash"] != cards[name].card_hash or ckpt["seed"] != seed:
            raise BenchError(
                f"{path}: trained from another version of the {name!r} card (or seed); regenerate the "
                f"reference with 'bench check {suite.name} --update'"
            )
        out[(name, seed)] = (Path(path), ckpt["state_hash"])
    return out


def find_checkpoints(
    suite: SuiteCard, store: ResultStore, workdir: Path, numerics: Numerics, seeds: tuple[int, ...]
) -> Checkpoints:
    """Without training: the workdir's checkpoints, else the newest recorded training in the store."""
    out: Checkpoints = {}
    for card in suite.cards:
        if card.external:
            continue  # resolved from its card: external_checkpoints
        for seed in seeds:
            path = trained_path(workdir, card, seed, numerics)
            if path is not None:
                out[(card.name, seed)] = (path, load_checkpoint(path)["state_hash"])
            elif (row := store.newest_training(card.name, card.card_hash, seed, numerics.label)) is not None:
                out[(card.name, seed)] = (path, row["checkpoint_hash"])
    return out


def _resources(
    cell: Cell, suite: SuiteCard, checkpoints: Checkpoints, dev: torch.device, data_root: Path | None, cache: dict
) -> dict:
    """What the cell's evaluation declared it needs beyond the context."""
    out = {}
    if "source_models" in cell.evaluation.needs:
        cards = {c.name: c for c in suite.cards}
        out["source_models"] = SourceModels(
            lambda name, s=cell.seed: evaluated_model(cards[name], checkpoints[(name, s)][0], dev), cell.seed, cache
        )
    if "data_files" in cell.evaluation.needs:
        out["data_files"] = DataFiles(suite.dataset, data_root)
    if "targets" in cell.evaluation.needs:
        cards = {c.name: c for c in suite.cards}
        ckpt = load_checkpoint(checkpoints[(cell.card.name, cell.seed)][0])

        def target(name: str, seed: int = cell.seed):
            if ("target", name, seed) not in cache:
                cache[("target", name, seed)] = card_target(cards[name], seed, data_root)
            return cache[("target", name, seed)]

        out["targets"] = Targets(target, cell.card.name, ckpt["layer_weights"], ckpt.get("taps", []))
    return out


def ensure_trained(
    card: ModelCard,
    seed: int,
    workdir: Path,
    device: str,
    data_root: Path | None,
    progress: Callable[[], Progress],
    deterministic: bool = False,
) -> tuple[Path, str, bool]:
    """(checkpoint, its hash, whether it was trained now). A damaged checkpoint goes to the
    trainer, which rebuilds it from the training state or trains again, saying so."""
    path = trained_path(workdir, card, seed, training_numerics(resolve_device(device)))
    if path is not None:
        try:
            return path, load_checkpoint(path)["state_hash"], False
        except CheckpointError:
            pass
    path = train(card, seed, workdir, device, data_root, progress(), deterministic=deterministic)
    return path, load_checkpoint(path)["state_hash"], True


class CellComputer:
    """Computes the cells of one suite on one device: the serial runner and every worker use it.
    Per process it keeps what cells share: clean predictions per model and subset, transfer images
    crafted once per source, similarity targets."""

    def __init__(
        self,
        suite: SuiteCard,
        checkpoints: Checkpoints,
        dev: torch.device,
        data_root: Path | None,
        subsets: dict[int, Subset],
        progress: Progress | None = None,
    ):
        self.suite, self.checkpoints, self.dev, self.data_root = suite, checkpoints, dev, data_root
        self.subsets, self.progress = subsets, progress or Silent()
        self.cache: dict = {}
        self.predictions: dict = {}
        self._model: tuple = (None, None)  # ((name, checkpoint), network) of the last cell computed
        self.seed = perturbation_seed(suite)
        self.numerics = evaluation_numerics(dev)
        self.packages, self.device_label = package_versions(), device_label(dev)
        self.provenance = {**json.loads(provenance(dev, self.numerics)), "suite_card": suite_card_hash(suite)}

    def compute(self, cell: Cell) -> tuple[dict, EvalOutput]:
        """(the store's metadata of the cell, its output)."""
        path = self.checkpoints[(cell.card.name, cell.seed)][0]
        model = self._load(cell.card, path)
        sub = self.subsets[cell.n_images]
        ctx = EvalContext(
            self.dev,
            self.seed,
            self.suite.batch_size,
            self.progress,
            indices=sub.indices,
            resources=_resources(cell, self.suite, self.checkpoints, self.dev, self.data_root, self.cache),
        )
        t, clock = time.perf_counter(), Clock()
        if (path, cell.n_images) not in self.predictions:
            self.predictions[(path, cell.n_images)] = predict(model, sub.x, ctx)
        ctx.predictions = self.predictions[(path, cell.n_images)]
        output = cell.evaluation.run(model, sub.x, sub.y, ctx)
        meta = {
            **planned_meta(self.suite, cell),
            "cell_seed": self.seed,
            "packages": self.packages,
            "device": self.device_label,
            "seconds": time.perf_counter() - t,
            "provenance": json.dumps({**self.provenance, **clock.record()}, sort_keys=True),
        }
        return meta, output

    def _load(self, card, path: Path) -> torch.nn.Module:
        """The cell's network, loaded once for the run of cells of one model and seed (its
        weights are frozen, so no evaluation can change them for the next cell)."""
        if self._model[0] != (card.name, path):
            self._model = ((card.name, path), None)  # the previous model is freed before the next loads
            self._model = ((card.name, path), evaluated_model(card, path, self.dev))
        return self._model[1]


def planned_meta(suite: SuiteCard, cell: Cell) -> dict:
    """The part of a cell's meta its plan fixes: what the computer writes, and what a cell file
    merged from a worker must agree with."""
    return {
        "regularizer": cell.card.regularizer_label,
        "arch": cell.card.arch,
        "dataset": suite.dataset,
        "n_images": cell.n_images,
    }


def subsets_of(suite: SuiteCard, ds: ImageDataset, cells: list[Cell]) -> dict[int, Subset]:
    return {n: subset_for(ds, suite, n) for n in dict.fromkeys(c.n_images for c in cells)}


def run_suite(
    suite: SuiteCard,
    store: ResultStore,
    workdir: Path,
    device: str = "auto",
    data_root: Path | None = None,
    progress: Callable[[], Progress] = Silent,
    *,
    pinned: dict[tuple[str, int], Path] | None = None,
    seeds: tuple[int, ...] | None = None,
    deterministic: bool = False,
    evaluate: bool = True,
    train_missing: bool = True,
    executor=None,
    only: tuple[str, ...] | None = None,
) -> RunSummary:
    """Train the missing models and evaluate the missing cells of ``seeds`` (default: the suite's).
    ``pinned``: (model, seed) -> checkpoint file used as is. ``train_missing=False`` only plans
    (a report of what is stored: no training, no evaluation); ``evaluate=False`` stops after
    training. ``executor`` (bench.executors): trainings and cells run as units of work on it;
    without, one after another in this process. ``only``: evaluate these models' cells alone
    (the others are still resolved, as the sources a transfer evaluation reads)."""
    t0 = time.perf_counter()
    dev = resolve_device(device)
    configure_device(dev, deterministic)
    seeds = tuple(seeds if seeds is not None else suite.seeds)
    summary = RunSummary()
    ds = load_dataset(suite.dataset, data_root)
    n_subset = subset_size(ds, suite)
    eval_numerics = evaluation_numerics(dev)

    if train_missing:
        externals = external_checkpoints(suite, ds, seeds, dev, probe=evaluate)
    else:
        externals = stored_external_checkpoints(suite, store, seeds)
    checkpoints = {**pinned_checkpoints(suite, pinned or {}), **externals}
    zoo = [c for c in suite.cards if not c.external]
    summary.phases["setup"] = time.perf_counter() - t0
    if train_missing:
        missing = [
            (c, s)
            for c in zoo
            for s in seeds
            if (c.name, s) not in checkpoints and trained_path(workdir, c, s, training_numerics(dev)) is None
        ]
        if missing:
            store.check_writable()  # before hours of training, not after
        if executor is not None and missing:
            executor.train(missing)
        for card in zoo:
            for seed in seeds:
                if (card.name, seed) in checkpoints:
                    continue
                path, state_hash, trained = ensure_trained(
                    card, seed, workdir, device, data_root, progress, deterministic
                )
                if trained or (card, seed) in missing:
                    summary.trained.append(f"{card.name}/seed{seed}")
                checkpoints[(card.name, seed)] = (path, state_hash)
    else:
        checkpoints = {**find_checkpoints(suite, store, workdir, training_numerics(dev), seeds), **checkpoints}
    cards = {c.name: c for c in suite.cards}
    for (name, seed), (path, state_hash) in checkpoints.items():
        if cards[name].external:
            continue  # not trained here: no training record
        if train_missing and not store.has_training(name, cards[name].card_hash, seed, state_hash):
            store.write_training(name, cards[name].card_hash, seed, load_checkpoint(path))

    summary.checkpoints = checkpoints
    summary.phases["train"] = time.perf_counter() - t0 - summary.phases["setup"]
    pending = []
    plan = plan_cells(suite, n_subset, seeds)
    subsets = subsets_of(suite, ds, plan)
    for cell in plan:
        cell.key = cell_key(suite, cell, checkpoints, subsets[cell.n_images].digest, eval_numerics)
        summary.cells.append(cell)
        if cell.key is not None and store.has(cell.key):
            summary.skipped += 1
        elif cell.key is not None and (only is None or cell.card.name in only):
            pending.append(cell)

    if pending and evaluate and train_missing:
        store.check_writable()
        if executor is not None:
            summary.evaluated = executor.evaluate(suite, pending, checkpoints, store)
        else:
            bar = progress()
            bar.start(f"evaluate {suite.name}", sum(c.evaluation.work(c.n_images) for c in pending))
            computer = CellComputer(suite, checkpoints, dev, data_root, subsets, bar)
            for cell in pending:
                meta, output = computer.compute(cell)
                store.write_cell(cell.key, output=output, **meta)
                summary.evaluated += 1
    summary.seconds = time.perf_counter() - t0
    summary.phases["evaluate"] = summary.seconds - summary.phases["setup"] - summary.phases["train"]
    return summary
