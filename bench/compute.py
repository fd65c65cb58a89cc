"""The two units of work of a run, in whatever process runs them (this one, or a worker): train
one model seed to its checkpoint, and compute planned cells. ``CellComputer`` keeps per process
what cells share (clean predictions, crafted transfer images, similarity targets)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from bench.cards import ModelCard, suite_card_hash
from bench.codestate import Clock
from bench.errors import CheckpointError
from bench.evals import EvalContext, EvalOutput
from bench.evals.base import DataFiles, SourceModels, predict
from bench.evals.similarity import Targets
from bench.numerics import device_label, evaluation_numerics, package_versions, provenance, training_numerics
from bench.plan import Cell, Checkpoints, RunSpec, Subset, perturbation_seed, planned_meta
from bench.runtime import Progress, Silent
from bench.targets.card import card_target
from bench.train.checkpoint import load_checkpoint, load_model
from bench.train.trainer import train, trained_path


def evaluated_model(card, path: Path, dev: torch.device) -> torch.nn.Module:
    """The network a cell evaluates: a zoo checkpoint, or an external card's model behind its
    input contract."""
    return card.load(dev) if card.external else load_model(path, str(dev))


def _resources(cell: Cell, run: RunSpec, checkpoints: Checkpoints, cache: dict) -> dict:
    """What the cell's evaluation declared it needs beyond the context."""
    suite, dev, data_root = run.suite, run.dev, run.data_root
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


def ensure_trained(run: RunSpec, card: ModelCard, seed: int, progress: Progress | None = None) -> tuple[Path, str]:
    """(checkpoint, its hash). A damaged checkpoint goes to the trainer, which rebuilds it from
    the training state or trains again, saying so; a lock per model in the workdir makes a second
    process on the same model wait and find it trained."""
    path = trained_path(run.workdir, card, seed, training_numerics(run.dev))
    if path is not None:
        try:
            return path, load_checkpoint(path)["state_hash"]
        except CheckpointError:
            pass
    path = train(card, seed, run.workdir, run.device, run.data_root, progress, deterministic=run.deterministic)
    return path, load_checkpoint(path)["state_hash"]


class CellComputer:
    """Computes the cells of one suite on one device: the serial runner and every worker use it.
    Per process it keeps what cells share: clean predictions per model and subset, transfer images
    crafted once per source, similarity targets."""

    def __init__(
        self, run: RunSpec, checkpoints: Checkpoints, subsets: dict[int, Subset], progress: Progress | None = None
    ):
        self.run, self.suite, self.dev = run, run.suite, run.dev
        self.checkpoints, self.subsets, self.progress = checkpoints, subsets, progress or Silent()
        self.cache: dict = {}
        self.predictions: dict = {}
        self._model: tuple = (None, None)  # ((name, checkpoint), network) of the last cell computed
        self.seed = perturbation_seed(self.suite)
        self.numerics = evaluation_numerics(self.dev)
        self.packages, self.device_label = package_versions(), device_label(self.dev)
        self.provenance = {**json.loads(provenance(self.dev, self.numerics)), "suite_card": suite_card_hash(self.suite)}

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
            resources=_resources(cell, self.run, self.checkpoints, self.cache),
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
