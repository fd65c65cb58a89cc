"""The similarity term of the loss as one object (method.md §3): the target and its stimuli on the
device, the similarity head, the pair sampler and their state. The baseline gets the null
object, so the training loop has no special cases."""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch
from torch import nn

from bench.cards import ModelCard, RegularizerSpec
from bench.targets import SimilarityTarget
from bench.targets.card import card_target
from bench.train.epoch import PairDraws
from bench.train.pairs import PairSampler
from bench.train.similarity import SimilarityHead, similarity_loss


@contextlib.contextmanager
def frozen_running_stats(model: nn.Module, frozen: bool):
    """With ``frozen``, BatchNorm still normalises the stimulus batches by their own statistics
    (train mode) but leaves the running statistics, which evaluation uses, to the classification
    data: natural-image stimuli then cannot shift a Fashion-MNIST model's normalisation."""
    if not frozen:
        yield
        return
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.momentum, m.num_batches_tracked.clone()) for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, (momentum, tracked) in zip(norms, saved):
            m.momentum = momentum
            m.num_batches_tracked.copy_(tracked)


class NoRegularizer:
    """alpha = 0 or no regularizer: no pair path at all (as the follow-up code), so BatchNorm never
    sees stimuli."""

    target = None

    def parameters(self) -> list[nn.Parameter]:
        return []

    def train(self) -> None:
        pass

    def draw(self, steps: int) -> PairDraws | None:
        """The pairs (and target values) of the next ``steps`` steps, on the device."""
        return None

    def loss(self, model: nn.Module, pairs: PairDraws | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(the weighted term added to the loss, the unweighted similarity loss for the logs)"""
        zero = torch.zeros((), device=next(model.parameters()).device)
        return zero, zero

    @property
    def layer_weights(self) -> list[float]:
        return []

    def state_dict(self) -> dict:
        return {"head": {}, "pairs": {}}

    def load_state_dict(self, state: dict) -> None:
        pass


class PairRegularizer(NoRegularizer):
    """alpha x (similarity loss of k stimulus pairs per step), pairs among the training stimuli."""

    def __init__(
        self,
        spec: RegularizerSpec,
        target: SimilarityTarget,
        model: nn.Module,
        seed: int,
        device: torch.device,
        memory_format: torch.memory_format = torch.contiguous_format,
    ):
        self.spec, self.target = spec, target
        self.stimuli = self.target.images.to(device, memory_format=memory_format)
        self.head = SimilarityHead(model.tap_channels(), spec.ema_beta).to(device)
        self.sampler = PairSampler(self.target.training_stimuli, spec.pairs_per_step, seed)
        self.device = device

    def parameters(self) -> list[nn.Parameter]:
        return list(self.head.parameters())

    def train(self) -> None:
        self.head.train()

    def draw(self, steps: int) -> PairDraws:
        i, j = zip(*(self.sampler.next() for _ in range(steps)))
        s = [self.target.lookup(a, b) for a, b in zip(i, j)]  # per step, as the values were always computed
        return PairDraws(*(torch.stack(t).to(self.device) for t in (i, j, s)))

    def loss(self, model: nn.Module, pairs: PairDraws) -> tuple[torch.Tensor, torch.Tensor]:
        with frozen_running_stats(model, self.spec.pair_bn == "classification"):
            s_cnn = self.head(model.features(self.stimuli[pairs.i]), model.features(self.stimuli[pairs.j]))
        sim = similarity_loss(s_cnn, pairs.s, self.spec.loss_convention, self.spec.loss_eps)
        return self.spec.alpha * sim, sim

    @property
    def layer_weights(self) -> list[float]:
        return self.head.layer_weights.tolist()

    def state_dict(self) -> dict:
        return {"head": self.head.state_dict(), "pairs": self.sampler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.head.load_state_dict(state["head"])
        self.sampler.load_state_dict(state["pairs"])


def make_regularizer(
    card: ModelCard,
    model: nn.Module,
    seed: int,
    device: torch.device,
    data_root: Path | None = None,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> NoRegularizer:
    target = card_target(card, seed, data_root)
    if target is None:
        return NoRegularizer()
    return PairRegularizer(card.regularizer, target, model, seed, device, memory_format)
