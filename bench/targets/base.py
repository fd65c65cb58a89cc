"""The target interface, and pair indexing over all i < j.

Targets answer ``lookup(i, j)`` for a batch of pairs instead of holding an N x N matrix:
a 5,000-image target has 12.5 M pairs, and a factorised or permuted view costs only what
each training step asks for."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import torch

from bench.errors import BenchError


def n_pairs(n: int) -> int:
    return n * (n - 1) // 2


def pair_rank(i: torch.Tensor, j: torch.Tensor, n: int) -> torch.Tensor:
    """Row-major rank of pair (i, j), i < j, among all pairs of n items."""
    return i * (2 * n - i - 1) // 2 + (j - i - 1)


def pair_unrank(m: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse of ``pair_rank``; float64 root, then an exact integer correction."""
    b = 2 * n - 1
    i = torch.floor((b - torch.sqrt((b * b - 8 * m).double())) / 2).long()
    # the float root may be one off near row boundaries: fix it with exact integer arithmetic
    i = torch.where(pair_rank(i, i + 1, n) > m, i - 1, i)
    i = torch.where(pair_rank(i + 1, i + 2, n) <= m, i + 1, i)
    j = m - pair_rank(i, i + 1, n) + i + 1
    return i, j


class SimilarityTarget(ABC):
    """Stimuli (N x 1 x H x W in [0,1]) and their pairwise similarity in [-1, 1]. The first
    ``n_train`` stimuli are the regularizer's; the rest are held out (brain-similarity checks)."""

    images: torch.Tensor
    description: dict
    n_train: int | None = None  # None: all
    labels: torch.Tensor | None = None  # the stimuli's class labels, where they are task images

    @property
    def n(self) -> int:
        return self.images.shape[0]

    @property
    def training_stimuli(self) -> int:
        return self.n if self.n_train is None else self.n_train

    def heldout_indices(self) -> torch.Tensor:
        return torch.arange(self.training_stimuli, self.n)

    @abstractmethod
    def lookup(self, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        """S[i, j] for index tensors of equal length."""

    def matrix(self, stimuli: torch.Tensor | None = None) -> torch.Tensor:
        """The dense matrix over ``stimuli`` (default: all N); for small N (tests, validation, plots)."""
        idx = torch.arange(self.n) if stimuli is None else stimuli
        i, j = torch.meshgrid(idx, idx, indexing="ij")
        return self.lookup(i.reshape(-1), j.reshape(-1)).reshape(len(idx), len(idx))


def unit_rows(x: torch.Tensor) -> torch.Tensor:
    """Subtract the mean over items from each feature, then L2-normalise each item's row:
    the centred cosine of method.md §2 (neurons) and §5 (pixels)."""
    x = x.double()
    x = x - x.mean(dim=0, keepdim=True)
    return (x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)).float()


class CosineTarget(SimilarityTarget):
    """S = V V^T for unit rows V, optionally passed through an element-wise ``transform``.
    Pixel, neural and raw targets are all this, with different V."""

    def __init__(
        self,
        images: torch.Tensor,
        vectors: torch.Tensor,
        description: dict,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ):
        if len(images) != len(vectors):
            raise ValueError("one vector per stimulus image")
        self.images, self.vectors, self.description, self.transform = images, vectors, description, transform

    def lookup(self, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        s = (self.vectors[i] * self.vectors[j]).sum(dim=1).clamp(-1.0, 1.0)
        s = torch.where(i == j, torch.ones_like(s), s)
        return self.transform(s) if self.transform else s


class ShuffledIds(SimilarityTarget):
    """Control (a): permute image identities, rows and columns together; keeps the spectrum."""

    def __init__(self, base: SimilarityTarget, seed: int):
        self.base, self.images = base, base.images
        self.perm = torch.randperm(base.n, generator=torch.Generator().manual_seed(seed))
        self.description = {**base.description, "shuffle": "shuffle-ids", "shuffle_seed": seed}

    def lookup(self, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        return self.base.lookup(self.perm[i], self.perm[j])


class ShuffledWithinClass(SimilarityTarget):
    """Control (c): permute image identities within each class label. The class structure of the
    similarities stays (a same-class pair stays same-class); their pixel specificity goes."""

    def __init__(self, base: SimilarityTarget, seed: int):
        if base.labels is None:
            raise BenchError(
                f"target {base.description.get('kind', '?')}: shuffle 'within-class' needs class labels of the "
                "stimuli, which this kind does not have; use shuffle 'ids'"
            )
        self.base, self.images, self.labels = base, base.images, base.labels
        generator = torch.Generator().manual_seed(seed)
        self.perm = torch.arange(base.n)
        for label in torch.unique(base.labels):
            members = torch.nonzero(base.labels == label).flatten()
            self.perm[members] = members[torch.randperm(len(members), generator=generator)]
        self.description = {**base.description, "shuffle": "shuffle-within-class", "shuffle_seed": seed}

    def lookup(self, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        return self.base.lookup(self.perm[i], self.perm[j])


class ShuffledEntries(SimilarityTarget):
    """Control (b): shuffle the off-diagonal entries symmetrically (pair m takes the value of
    pair perm[m]); keeps the distribution of similarities, destroys the matrix structure."""

    def __init__(self, base: SimilarityTarget, seed: int):
        self.base, self.images = base, base.images
        self.perm = torch.randperm(n_pairs(base.n), generator=torch.Generator().manual_seed(seed))
        self.description = {**base.description, "shuffle": "shuffle-entries", "shuffle_seed": seed}

    def lookup(self, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        off = i != j
        s = torch.empty(len(i))
        s[~off] = self.base.lookup(i[~off], j[~off])
        lo, hi = torch.minimum(i[off], j[off]), torch.maximum(i[off], j[off])
        s[off] = self.base.lookup(*pair_unrank(self.perm[pair_rank(lo, hi, self.n)], self.n))
        return s


def changed_fraction(base: SimilarityTarget, shuffled: SimilarityTarget, sample: int = 20_000, seed: int = 0) -> float:
    """Fraction of pairs whose value a shuffle changed, on a seeded sample of pairs: with a mostly
    zero (thresholded) target a shuffle changes few pairs, and the control is nearly the treatment."""
    total = n_pairs(base.n)
    m = (
        torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:sample]
        if total > sample
        else torch.arange(total)
    )
    i, j = pair_unrank(m, base.n)
    return float((base.lookup(i, j) != shuffled.lookup(i, j)).float().mean())
