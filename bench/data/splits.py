"""Seeded, deterministic index sets: the train/validation split and fixed evaluation subsets."""

from __future__ import annotations

import hashlib

import torch


def _perm(n: int, seed: int) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))


def train_val_split(n: int, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Hold out ``val_fraction`` of the training set (at least one image when > 0)."""
    n_val = max(1, round(n * val_fraction)) if val_fraction > 0 else 0
    perm = _perm(n, seed)
    return perm[n_val:].sort().values, perm[:n_val].sort().values


def eval_subset(x: torch.Tensor, y: torch.Tensor, size: int, seed: int) -> tuple[torch.Tensor, str]:
    """Indices of a fixed evaluation subset, and a hash of exactly what they select
    (indices, pixels and labels), recorded with every result."""
    if size <= 0 or size > len(y):
        size = len(y)
    idx = _perm(len(y), seed)[:size].sort().values
    h = hashlib.sha256()
    h.update(idx.numpy().tobytes())
    h.update(x[idx].contiguous().numpy().tobytes())
    h.update(y[idx].numpy().tobytes())
    return idx, h.hexdigest()[:16]
