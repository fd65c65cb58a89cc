"""What a run of a suite consists of, before anything runs: every (model, seed, evaluation) cell,
the subset it is evaluated on, the checkpoint it reads and its content key, which trainings are
missing and which cells are pending. Planning trains nothing, evaluates nothing and writes
nothing: ``bench run`` plans, trains the missing models, plans again and evaluates the pending
cells; ``report``, ``status``, ``merge``, ``check --no-run`` and workers read a plan.

``RunSpec`` is the one value that says where and how a run happens; it travels to the workers."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import torch

from bench.cards import EvalSpec, ModelCard, SuiteCard
from bench.config import canonical_json
from bench.data import ImageDataset, eval_subset, is_dataset_card, load_dataset, to_float, train_val_split
from bench.errors import BenchError, CheckpointError
from bench.evals import EVALUATIONS, Evaluation
from bench.evals.clean import CleanParams
from bench.evals.reporting import ReportSpec
from bench.numerics import Numerics, evaluation_numerics, training_numerics
from bench.runtime import resolve_device
from bench.seeds import sub_seed
from bench.store import CellKey, ResultStore
from bench.train.checkpoint import load_checkpoint
from bench.train.trainer import trained_path


@dataclass(frozen=True)
class RunSpec:
    """Where and how a run happens: the suite, its workdir and store, the device and data, and
    the numerics asked for. Plain data, so a worker on another machine that shares the workdir
    needs nothing else."""

    suite: SuiteCard
    workdir: Path = Path(".bench")
    store: Path | None = None  # default WORKDIR/results.sqlite
    device: str = "auto"
    data_root: Path | None = None
    deterministic: bool = False  # CUDA: deterministic algorithms (CPU runs are deterministic already)
    threads: int = 1  # torch threads per worker process

    def __post_init__(self):
        object.__setattr__(self, "workdir", Path(self.workdir).resolve())  # workers may run elsewhere
        if self.data_root is not None:
            object.__setattr__(self, "data_root", Path(self.data_root))

    @property
    def store_path(self) -> Path:
        return Path(self.store) if self.store is not None else self.workdir / "results.sqlite"

    @property
    def dev(self) -> torch.device:
        return resolve_device(self.device)


@dataclass
class Cell:
    card: ModelCard
    seed: int
    spec: EvalSpec
    evaluation: Evaluation
    n_images: int
    spec_index: int = 0  # position of its evaluation in the suite's (clean first)
    key: CellKey | None = None  # known once the checkpoints it reads exist

    @property
    def reads(self) -> tuple[str, ...]:
        """The models whose checkpoints the cell reads: its own, and any sources (transfer)."""
        return (self.card.name, *self.evaluation.sources())


Checkpoints = dict[tuple[str, int], tuple[Path | None, str]]  # (model, seed) -> (file, checkpoint hash)


@dataclass(frozen=True)
class Subset:
    x: torch.Tensor
    y: torch.Tensor
    indices: torch.Tensor  # into the split it is drawn from
    digest: str


@dataclass
class Plan:
    """``cells``: every cell of the suite's seeds, keyed where its checkpoints are known;
    ``missing``: zoo trainings with no checkpoint file in the workdir that a cell not in the
    store reads (a training known only from the store's record, whose cells are all stored,
    is read, not retrained: an experiment resumed from an export on another machine);
    ``pending``: keyed cells not in the store whose checkpoint files exist."""

    run: RunSpec
    seeds: tuple[int, ...]
    cells: list[Cell]
    checkpoints: Checkpoints
    missing: list[tuple[ModelCard, int]]
    pending: list[Cell]
    subsets: dict[int, Subset] = field(default_factory=dict)
    stored: int = 0  # cells already in the store
    num_classes: int = 0

    @property
    def labels(self):
        """The labels of the suite's evaluation subset (a cell of n images evaluates its first n)."""
        return self.subsets[max(self.subsets)].y.numpy() if self.subsets else None


def plan(
    run: RunSpec,
    store: ResultStore,
    *,
    seeds: tuple[int, ...] | None = None,
    known: Checkpoints | None = None,
    only: tuple[str, ...] | None = None,
) -> Plan:
    """The plan of ``run`` over ``seeds`` (default: the suite's). Checkpoints come from
    ``known`` (pinned files, loaded outside models) first, then the workdir, then the store's
    records (outside models: the weights hash an evaluation recorded, so no author's code runs).
    ``only``: pending cells of these models alone (the others are still resolved, as the sources
    a transfer evaluation reads)."""
    suite, dev = run.suite, run.dev
    seeds = tuple(seeds if seeds is not None else suite.seeds)
    ds = load_dataset(suite.dataset, run.data_root)
    checkpoints = {
        **find_checkpoints(suite, store, run.workdir, training_numerics(dev), seeds),
        **stored_external_checkpoints(suite, store, seeds),
        **(known or {}),
    }
    cells = plan_cells(suite, subset_size(ds, suite), seeds)
    subsets = subsets_of(suite, ds, cells)
    numerics = evaluation_numerics(dev)
    pending, stored, needed = [], 0, set()
    for cell in cells:
        cell.key = cell_key(suite, cell, checkpoints, subsets[cell.n_images].digest, numerics)
        if cell.key is not None and store.has(cell.key):
            stored += 1
            continue
        if only is not None and cell.card.name not in only:
            continue
        needed.update((name, cell.seed) for name in cell.reads)
        if cell.key is not None and all(checkpoints[(name, cell.seed)][0] is not None for name in cell.reads):
            pending.append(cell)
    missing = [
        (c, s)
        for c in suite.cards
        if not c.external
        for s in seeds
        if checkpoints.get((c.name, s), (None, ""))[0] is None and (c.name, s) in needed
    ]
    return Plan(run, seeds, cells, checkpoints, missing, pending, subsets, stored, ds.num_classes)


def suite_evaluations(suite: SuiteCard) -> list[EvalSpec]:
    """The card's evaluations, with clean accuracy first even where the card omits it."""
    specs = list(suite.evaluations)
    if not any(s.kind == "clean" for s in specs):
        specs.insert(0, EvalSpec("clean", CleanParams()))
    return specs


def report_specs(suite: SuiteCard) -> list[ReportSpec]:
    """How each of the suite's evaluations (clean first) is reported, as it declares."""
    return [EVALUATIONS.get(s.kind)(s.params).report() for s in suite_evaluations(suite)]


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
    """How many images the suite evaluates: its subset size, at most its split's. A dataset
    card's split smaller than the subset is an error: the user's numbers would silently rest on
    fewer images than the card says."""
    available = len(evaluation_pool(ds, suite)[1])
    if suite.subset.size > available and is_dataset_card(suite.dataset):
        raise BenchError(
            f"{suite.path or suite.name}: key 'subset.size' = {suite.subset.size}, but dataset {suite.dataset!r} has "
            f"{available} images in its {suite.subset.split} split; lower subset.size or add images"
        )
    return min(suite.subset.size, available)


def subset_for(ds: ImageDataset, suite: SuiteCard, n: int) -> Subset:
    """The suite's fixed subset, cut to its first n images for evaluations with max_images."""
    x, y, pool = evaluation_pool(ds, suite)
    idx, digest = eval_subset(x, y, suite.subset.size, suite.subset.seed)
    if n < len(idx):
        idx, digest = idx[:n], hashlib.sha256(f"{digest}:{n}".encode()).hexdigest()[:16]
    return Subset(to_float(x[idx]), y[idx], torch.as_tensor(pool[idx]), digest)


def subsets_of(suite: SuiteCard, ds: ImageDataset, cells: list[Cell]) -> dict[int, Subset]:
    return {n: subset_for(ds, suite, n) for n in dict.fromkeys(c.n_images for c in cells)}


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


def cell_key(
    suite: SuiteCard, cell: Cell, checkpoints: Checkpoints, subset_hash: str, numerics: Numerics
) -> CellKey | None:
    """Keyed by the checkpoint evaluated and those of any source models it reads (transfer);
    None while one of them is unknown."""
    if any((name, cell.seed) not in checkpoints for name in cell.reads):
        return None
    hashes = [checkpoints[(name, cell.seed)][1] for name in cell.reads]
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


def planned_meta(suite: SuiteCard, cell: Cell) -> dict:
    """The part of a cell's meta its plan fixes: what the computer writes, and what a cell file
    merged from a worker must agree with."""
    return {
        "regularizer": cell.card.regularizer_label,
        "arch": cell.card.arch,
        "dataset": suite.dataset,
        "n_images": cell.n_images,
    }


def external_checkpoints(
    suite: SuiteCard, ds: ImageDataset, seeds: tuple[int, ...], dev: torch.device, probe: bool = True
) -> Checkpoints:
    """Each external model loaded (its 'checkpoint hash' is its weights' hash) and checked
    against the suite's dataset: the contract always, and with ``probe`` (before an evaluation)
    the output shape and dtype and finite logits on the evaluation images. A model that does not
    fit fails here, with nothing stored. Runs the author's code where its card allows it: only
    a run calls this, never a plan."""
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
    """Each external model's weights hash as an evaluation recorded it, found through the card
    hash (its file's sha256); no model is loaded, so no author's code runs. A model never
    evaluated has no entry (its cells are not stored)."""
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
    """The workdir's checkpoints, else the newest recorded training in the store (no file: its
    cells can be read, not computed). A damaged file counts as none: the trainer rebuilds it."""
    out: Checkpoints = {}
    for card in suite.cards:
        if card.external:
            continue  # resolved from its card
        for seed in seeds:
            path = trained_path(workdir, card, seed, numerics)
            if path is not None:
                try:
                    out[(card.name, seed)] = (path, load_checkpoint(path)["state_hash"])
                    continue
                except CheckpointError:
                    pass
            if (row := store.newest_training(card.name, card.card_hash, seed, numerics.label)) is not None:
                out[(card.name, seed)] = (None, row["checkpoint_hash"])
    return out
