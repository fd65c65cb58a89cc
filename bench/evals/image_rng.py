"""Common random numbers: one generator per evaluation image, seeded by (suite, evaluation,
grid point, test-set index of the image) and by nothing about the model. Every model and training
seed therefore sees the identical noisy or corrupted image, and paired comparisons measure the
models, not the draws. An image's draws also do not depend on which other images are evaluated
(a ``max_images`` cut, another subset size)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from bench.seeds import sub_seed


class ImageRNG:
    """Draws shaped (images, *shape): row k comes from image k's own generator."""

    def __init__(self, seeds: Sequence[int]):
        self.gens = [torch.Generator().manual_seed(int(s)) for s in seeds]

    @classmethod
    def for_images(cls, point_seed: int, indices: torch.Tensor) -> ImageRNG:
        return cls([sub_seed(point_seed, int(i)) for i in indices])

    def __len__(self) -> int:
        return len(self.gens)

    def _stack(self, draw) -> torch.Tensor:
        return torch.stack([draw(g) for g in self.gens])

    def rand(self, *shape: int) -> torch.Tensor:
        return self._stack(lambda g: torch.rand(shape, generator=g))

    def randn(self, *shape: int) -> torch.Tensor:
        return self._stack(lambda g: torch.randn(shape, generator=g))

    def uniform(self, low: float, high: float, *shape: int) -> torch.Tensor:
        return low + (high - low) * self.rand(*shape)

    def randint(self, low: int, high: int, *shape: int) -> torch.Tensor:
        return self._stack(lambda g: torch.randint(low, high, shape, generator=g))

    def poisson(self, rates: torch.Tensor) -> torch.Tensor:
        """Poisson counts with per-image rates (rates[k] uses image k's generator)."""
        if len(rates) != len(self.gens):
            raise ValueError(f"{len(rates)} rate rows for {len(self.gens)} images")
        return torch.stack([torch.poisson(r, generator=g) for r, g in zip(rates, self.gens)])
