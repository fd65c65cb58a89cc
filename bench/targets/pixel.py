"""Pixel targets (Attias et al. 2024): centred cosine similarity of the stimuli's pixels, and
its thresholded form S_th = +1 / -1 / 0 (method.md §5)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import torch
from pydantic import ConfigDict, Field

from bench.data import load_dataset, to_float
from bench.errors import BenchError
from bench.targets.base import CosineTarget, unit_rows
from bench.targets.build import TARGETS, Stimuli


@dataclass(frozen=True)
class PixelParams:
    __pydantic_config__ = ConfigDict(extra="forbid")
    stimuli: str  # dataset whose training images are the stimuli
    n_stimuli: Annotated[int, Field(ge=2, le=100_000)] = 1000  # for training (held-out ones come on top)


@dataclass(frozen=True)
class PixelThresholdParams(PixelParams):
    threshold: Annotated[float, Field(ge=0, lt=1)] = 0.8
    # +-1 become +-(1 - shrink) so atanh stays finite; the follow-up code uses 0 and relies
    # on the loss's own eps guard alone
    shrink: Annotated[float, Field(ge=0, lt=1)] = 1e-3


def stimulus_indices(n_images: int, n: int, seed: int, exclude: torch.Tensor | None = None) -> torch.Tensor:
    """The first n of a seeded permutation of a dataset's training images, skipping ``exclude``
    (a model's validation images)."""
    perm = torch.randperm(n_images, generator=torch.Generator().manual_seed(seed))
    if exclude is not None and len(exclude):
        perm = perm[~torch.isin(perm, torch.as_tensor(exclude))]
    if len(perm) < n:
        raise BenchError(f"pixel target: {n} stimuli requested, {len(perm)} training images available")
    return perm[:n]


def stimulus_images(dataset: str, n: int, seed: int, data_root: Path | None, exclude=None) -> torch.Tensor:
    """Stimuli as floats in [0,1] (``stimulus_indices`` of the dataset's training images)."""
    return labelled_stimuli(dataset, n, seed, data_root, exclude)[0]


def labelled_stimuli(
    dataset: str, n: int, seed: int, data_root: Path | None, exclude=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``stimulus_images`` and their class labels."""
    ds = load_dataset(dataset, data_root)
    idx = stimulus_indices(len(ds.train_y), n, seed, exclude)
    return to_float(ds.train_x[idx]), torch.as_tensor(ds.train_y[idx]).long()


def threshold(th: float, shrink: float):
    top = 1.0 - shrink

    def apply(s: torch.Tensor) -> torch.Tensor:
        return torch.where(s > th, top, torch.where(s < -th, -top, 0.0)).to(s.dtype)

    return apply


def _centred_pixel_target(
    kind: str, params: PixelParams, seed: int, data_root: Path | None, stimuli: Stimuli, transform=None, **extra
) -> CosineTarget:
    """Centred cosine over all stimuli, training and held out (as the neural targets are built)."""
    n = params.n_stimuli
    images, labels = labelled_stimuli(
        params.stimuli, n + stimuli.heldout, seed, data_root, stimuli.exclude.get(params.stimuli)
    )
    vectors = unit_rows(images.flatten(1))
    desc = {
        "kind": kind,
        "stimuli": params.stimuli,
        "n_stimuli": n,
        "heldout": stimuli.heldout,
        "seed": seed,
        "excluded": int(len(stimuli.exclude.get(params.stimuli, ()))),
        **extra,
    }
    target = CosineTarget(images, vectors, desc, transform)
    target.labels = labels
    return target


@dataclass(frozen=True)
class ConstantParams(PixelParams):
    value: Annotated[float, Field(ge=-1, le=1)] = 0.0


def constant(value: float):
    def apply(s: torch.Tensor) -> torch.Tensor:
        return torch.full_like(s, value)

    return apply


@TARGETS.register("constant")
class ConstantTarget:
    """One similarity for every pair (0: the regularizer is pure decorrelation) on the pixel
    targets' stimuli (the same images for the same seed): the control that asks how much of a
    mostly-zero thresholded target's effect its structure carries."""

    Params = ConstantParams

    @staticmethod
    def build(params: ConstantParams, seed: int, data_root: Path | None, stimuli: Stimuli) -> CosineTarget:
        return _centred_pixel_target(
            "constant", params, seed, data_root, stimuli, constant(params.value), value=params.value
        )


@TARGETS.register("pixel")
class PixelTarget:
    Params = PixelParams

    @staticmethod
    def build(params: PixelParams, seed: int, data_root: Path | None, stimuli: Stimuli) -> CosineTarget:
        return _centred_pixel_target("pixel", params, seed, data_root, stimuli)


@TARGETS.register("pixel-threshold")
class PixelThresholdTarget:
    Params = PixelThresholdParams

    @staticmethod
    def build(params: PixelThresholdParams, seed: int, data_root: Path | None, stimuli: Stimuli) -> CosineTarget:
        return _centred_pixel_target(
            "pixel-threshold",
            params,
            seed,
            data_root,
            stimuli,
            threshold(params.threshold, params.shrink),
            threshold=params.threshold,
            shrink=params.shrink,
        )
