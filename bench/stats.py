"""Statistics for leaderboards: pure functions of numpy arrays, no I/O.

Paired comparisons use what the suite design gives: the same evaluation images and the same
training seeds for every model. Arrays of per-image outcomes are shaped (seeds, images)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest


def mean_sem(values) -> tuple[float, float, int]:
    """Mean, standard error of the mean (ddof = 1; NaN for one value) and count."""
    v = np.asarray(values, dtype=float)
    n = len(v)
    if n == 0:
        return math.nan, math.nan, 0
    return float(v.mean()), (float(v.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan), n


def curve_auc(levels, values) -> float:
    """Normalised area under an accuracy-vs-level curve: the trapezoid area divided by the
    level range, i.e. the mean accuracy over the range (a single point: its value)."""
    x, y = np.asarray(levels, float), np.asarray(values, float)
    order = np.argsort(x)
    x, y = x[order], y[order]
    if len(x) == 1 or x[-1] == x[0]:
        return float(y.mean())
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2) / (x[-1] - x[0]))


def per_image_auc(levels, correct: np.ndarray) -> np.ndarray:
    """``curve_auc`` of each image's correctness curve; correct is (..., levels, images).
    Their mean over images is the curve's AUC, so AUC differences can be bootstrapped by image."""
    x = np.asarray(levels, float)
    order = np.argsort(x)
    x, c = x[order], np.take(np.asarray(correct, float), order, axis=-2)
    if len(x) == 1 or x[-1] == x[0]:
        return c.mean(axis=-2)
    w = np.diff(x) / (x[-1] - x[0]) / 2
    return np.einsum("l,...li->...i", w, c[..., 1:, :] + c[..., :-1, :])


@dataclass(frozen=True)
class McNemar:
    a_only: int  # pairs where A is correct and B is wrong
    b_only: int
    p_value: float


def mcnemar(correct_a, correct_b) -> McNemar:
    """Exact (binomial) two-sided McNemar test on paired correctness, pooled over all pairs
    given (images x seeds)."""
    a = np.asarray(correct_a, bool).ravel()
    b = np.asarray(correct_b, bool).ravel()
    a_only, b_only = int(np.sum(a & ~b)), int(np.sum(~a & b))
    n = a_only + b_only
    p = 1.0 if n == 0 else float(binomtest(a_only, n, 0.5).pvalue)
    return McNemar(a_only, b_only, p)


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float


def paired_bootstrap(
    a: np.ndarray,
    b: np.ndarray,
    statistic: Callable[[np.ndarray, np.ndarray], np.ndarray],
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> Interval:
    """Percentile bootstrap over images (the same resampled images for both models and all
    seeds) of ``statistic(a, b)``; a and b are (seeds, images). ``statistic`` maps
    (..., seeds, images) arrays to (...) values, so all resamples are computed at once."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"paired arrays must both be (seeds, images), got {a.shape} and {b.shape}")
    estimate = float(statistic(a, b))
    idx = np.random.default_rng(seed).integers(0, a.shape[1], size=(n_boot, a.shape[1]))
    boots = statistic(a[:, idx].transpose(1, 0, 2), b[:, idx].transpose(1, 0, 2))
    with np.errstate(invalid="ignore"):
        lo, hi = (
            np.nanquantile(boots, [(1 - level) / 2, (1 + level) / 2])
            if np.isfinite(boots).any()
            else (math.nan, math.nan)
        )
    return Interval(estimate, float(lo), float(hi))


MIN_SEEDS = 3  # fewer training seeds give no interval for a training effect (its variance is unknown)


def hierarchical_bootstrap(
    a: np.ndarray,
    b: np.ndarray,
    statistic: Callable[[np.ndarray, np.ndarray], np.ndarray],
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    min_seeds: int = MIN_SEEDS,
) -> Interval:
    """Percentile bootstrap of ``statistic(a, b)`` over both sources of variance: training seeds
    are resampled (paired: the same seed draws for both models), then images within each drawn
    seed (the same images for both: common random numbers). a and b are (seeds, images). With
    fewer than ``min_seeds`` seeds the interval is NaN: the training variance is unknown, and an
    interval over images alone would pass the noise of one training run off as an effect."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"paired arrays must both be (seeds, images), got {a.shape} and {b.shape}")
    estimate = float(statistic(a, b))
    n_seeds, n_images = a.shape
    if n_seeds < min_seeds:
        return Interval(estimate, math.nan, math.nan)
    rng = np.random.default_rng(seed)
    boots = []
    for chunk in np.array_split(np.arange(n_boot), max(1, n_boot * n_seeds * n_images // 4_000_000)):
        seeds = rng.integers(0, n_seeds, size=(len(chunk), n_seeds))
        images = rng.integers(0, n_images, size=(len(chunk), n_seeds, n_images))
        boots.append(statistic(a[seeds[..., None], images], b[seeds[..., None], images]))
    boots = np.concatenate(boots)
    with np.errstate(invalid="ignore"):
        lo, hi = (
            np.nanquantile(boots, [(1 - level) / 2, (1 + level) / 2])
            if np.isfinite(boots).any()
            else (math.nan, math.nan)
        )
    return Interval(estimate, float(lo), float(hi))


def mean_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean over seeds and images of a - b (accuracy or per-image AUC differences)."""
    return (a - b).mean(axis=(-2, -1))


def median_shift(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean over seeds of median_images(a) - median_images(b): the shift of the per-image minimal
    perturbation (medians tolerate the +inf of images where no adversarial was found)."""
    with np.errstate(invalid="ignore"):
        return (np.median(a, axis=-1) - np.median(b, axis=-1)).mean(axis=-1)


def ranks(values, higher_is_better: bool = True) -> list[int]:
    """Competition ranks (1 = best; ties share the better rank; NaN ranks last)."""
    v = np.asarray(values, float)
    key = np.where(np.isnan(v), -np.inf if higher_is_better else np.inf, v)
    key = -key if higher_is_better else key
    return [int(np.sum(key < k)) + 1 for k in key]
