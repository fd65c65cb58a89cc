"""Pixel targets (Attias et al. 2024): centred cosine similarity of the stimuli's pixels, and
its thresholded form S_th = +1 / -1 / 0 (method.md §5)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from pydantic import ConfigDict

from bench.data import load_dataset, to_float
from bench.targets.base import CosineTarget, unit_rows
from bench.targets.build import TARGETS


@dataclass(frozen=True)
class PixelParams:
    __pydantic_config__ = ConfigDict(extra="forbid")
    stimuli: str  # dataset whose training images are the stimuli
    n_stimuli: int = 1000


@dataclass(frozen=True)
class PixelThresholdParams(PixelParams):
    threshold: float = 0.8
    # +-1 become +-(1 - shrink) so atanh stays finite; the follow-up code uses 0 and relies
    # on the loss's own eps guard alone
    shrink: float = 1e-3


def stimulus_images(dataset: str, n: int, seed: int, data_root: Path | None) -> torch.Tensor:
    """The first n training images of a seeded permutation, as floats in [0,1]."""
    ds = load_dataset(dataset, data_root)
    idx = torch.randperm(len(ds.train_y), generator=torch.Generator().manual_seed(seed))[:n]
    return to_float(ds.train_x[idx])


def threshold(th: float, shrink: float):
    top = 1.0 - shrink

    def apply(s: torch.Tensor) -> torch.Tensor:
        return torch.where(s > th, top, torch.where(s < -th, -top, 0.0)).to(s.dtype)

    return apply


def _centred_pixel_target(kind: str, params: PixelParams, seed: int, data_root: Path | None,
                          transform=None, **extra) -> CosineTarget:
    images = stimulus_images(params.stimuli, params.n_stimuli, seed, data_root)
    desc = {"kind": kind, "stimuli": params.stimuli, "n_stimuli": len(images), "seed": seed, **extra}
    return CosineTarget(images, unit_rows(images.flatten(1)), desc, transform)


@TARGETS.register("pixel")
class PixelTarget:
    Params = PixelParams

    @staticmethod
    def build(params: PixelParams, seed: int, data_root: Path | None) -> CosineTarget:
        return _centred_pixel_target("pixel", params, seed, data_root)


@TARGETS.register("pixel-threshold")
class PixelThresholdTarget:
    Params = PixelThresholdParams

    @staticmethod
    def build(params: PixelThresholdParams, seed: int, data_root: Path | None) -> CosineTarget:
        return _centred_pixel_target("pixel-threshold", params, seed, data_root, threshold(params.threshold, params.shrink),
                                     threshold=params.threshold, shrink=params.shrink)
