"""An epoch's randomness drawn before its first step: the sample order, the crops and flips
and the regularizer's stimulus pairs with their target values come from the same generators in
the same order as when each step drew its own, so CPU weights are bit-identical to that, and a
GPU gets one upload per epoch instead of six blocking copies per step."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bench.train.augment import draw_crop_flip


@dataclass(frozen=True)
class PairDraws:
    """Stimulus pair indices and the target's similarity of each pair: steps x k, or k for one step."""

    i: torch.Tensor
    j: torch.Tensor
    s: torch.Tensor

    def __getitem__(self, step: int) -> PairDraws:
        return PairDraws(self.i[step], self.j[step], self.s[step])


@dataclass(frozen=True)
class EpochDraws:
    order: torch.Tensor  # a permutation of the training images
    crops: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None  # dy, dx, flip: steps x batch
    pairs: PairDraws | None

    def step(self, b: int, batch_size: int):
        """(image indices, crop of the batch or None, pairs or None) of step b."""
        idx = self.order[b * batch_size : (b + 1) * batch_size]
        crop = None if self.crops is None else tuple(c[b] for c in self.crops)
        return idx, crop, None if self.pairs is None else self.pairs[b]


def draw_epoch(
    n: int, steps: int, batch_size: int, augment: bool, data_gen: torch.Generator, reg, device: torch.device
) -> EpochDraws:
    order = torch.randperm(n, generator=data_gen)
    crops = None
    if augment:
        per_step = [draw_crop_flip(data_gen, batch_size) for _ in range(steps)]
        crops = tuple(torch.stack(c).to(device) for c in zip(*per_step))
    return EpochDraws(order.to(device), crops, reg.draw(steps))
