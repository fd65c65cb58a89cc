"""Statistics for leaderboards: pure functions of numpy arrays, no I/O.

A paired comparison asks about training procedures: model A's recipe against model B's, on the
same evaluation images (common random numbers) and the same training seeds. Its unit of
replication is the training seed, so the default interval is a Student-t interval on one paired
statistic per seed (df = seeds - 1) with an exact sign-flip permutation p-value. Bootstraps over
seeds and images are options; a percentile bootstrap of a mean of S seed means reads a variance
(S-1)/S too small with normal quantiles and covers 75-90 % at 3-10 seeds (simulation in
tests/test_coverage.py). Arrays of per-image outcomes are shaped (seeds, images)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq
from scipy.stats import binomtest, nct
from scipy.stats import t as student_t

MIN_SEEDS = 3  # fewer training seeds give no interval for a training effect (its variance is barely known)
EXACT_SIGN_FLIPS = 16  # up to this many seeds the sign-flip test enumerates all 2^S patterns


def mean_sem(values) -> tuple[float, float, int]:
    """Mean, standard error of the mean (ddof = 1; NaN for one value) and count."""
    v = np.asarray(values, dtype=float)
    n = len(v)
    if n == 0:
        return math.nan, math.nan, 0
    with np.errstate(invalid="ignore"):  # inf values (no adversarial found): an infinite mean, no SEM
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


# --------------------------------------------------------------------------- paired statistics
@dataclass(frozen=True)
class PairedStatistic:
    """One number per training seed from the paired per-image values of that seed:
    ``per_seed(a, b)`` maps (..., seeds, images) arrays to (..., seeds); the effect is its mean
    over seeds."""

    name: str
    per_seed: Callable[[np.ndarray, np.ndarray], np.ndarray]
    log_scale: bool = False  # a log ratio: shown as the percentage change exp(x) - 1

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore"):  # inf - inf of undefined seeds: NaN, counted by the caller
            return self.per_seed(a, b).mean(axis=-1)


def _median_shift(a, b):
    with np.errstate(invalid="ignore"):
        return np.median(a, axis=-1) - np.median(b, axis=-1)


def _log_median_ratio(a, b):
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.log(np.median(a, axis=-1)) - np.log(np.median(b, axis=-1))


MEAN_DIFFERENCE = PairedStatistic("mean difference", lambda a, b: (a - b).mean(axis=-1))
MEDIAN_SHIFT = PairedStatistic("median shift", _median_shift)
LOG_MEDIAN_RATIO = PairedStatistic("log ratio of medians", _log_median_ratio, log_scale=True)


def mean_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean over seeds and images of a - b (accuracy or per-image AUC differences)."""
    return MEAN_DIFFERENCE(a, b)


def median_shift(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean over seeds of median_images(a) - median_images(b): the shift of the per-image minimal
    perturbation (medians tolerate the +inf of images where no adversarial was found)."""
    return MEDIAN_SHIFT(a, b)


# --------------------------------------------------------------------------- intervals
@dataclass(frozen=True)
class Interval:
    """An effect with its interval, the method that made it and the two-sided p-value of 'no
    effect'. ``nan_resamples``: bootstrap resamples whose statistic was undefined (a median
    shift of two infinite medians), excluded from the percentiles and reported."""

    estimate: float
    low: float
    high: float
    method: str = ""
    df: float = math.nan
    p_value: float = math.nan  # sign-flip permutation (t method), NaN for bootstraps
    p_t: float = math.nan  # the t test's own p-value (t method)
    sd: float = math.nan  # SD of the per-seed statistic (t method)
    n: int = 0  # seeds
    nan_resamples: int = 0
    resamples: int = 0
    level: float = 0.95
    reason: str = ""  # why there is no interval, where there is none

    @property
    def label(self) -> str:
        """How it was made, as printed beside it."""
        if self.method == "t":
            return f"t, df {self.df:g}"
        if self.resamples:
            nan = f", {self.nan_resamples} NaN excluded" if self.nan_resamples else ""
            return f"{self.method}, {self.resamples} resamples{nan}"
        return self.method


def _finite(values: np.ndarray) -> np.ndarray:
    v = np.asarray(values, float)
    return v[np.isfinite(v)]


def sign_flip_p(per_seed, alternative: str = "two-sided", n_random: int = 200_000, seed: int = 0) -> float:
    """Exact sign-flip permutation p-value of 'the per-seed differences are symmetric around 0'
    for their mean: all 2^S sign patterns up to 16 seeds, else ``n_random`` random patterns
    (p = (1 + hits) / (1 + n)). alternative: 'two-sided', 'greater' or 'less'."""
    d = np.asarray(per_seed, float)
    n = len(d)
    if n == 0 or not np.isfinite(d).all():
        return math.nan
    if n <= EXACT_SIGN_FLIPS:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
        exact = True
    else:
        signs = np.where(np.random.default_rng(seed).random((n_random, n)) < 0.5, -1.0, 1.0)
        exact = False
    null = signs @ d / n
    observed = d.mean()
    tol = 1e-12 * max(1.0, float(np.abs(d).max()))
    if alternative == "greater":
        hits = np.sum(null >= observed - tol)
    elif alternative == "less":
        hits = np.sum(null <= observed + tol)
    else:
        hits = np.sum(np.abs(null) >= abs(observed) - tol)
    return float(hits / len(null)) if exact else float((1 + hits) / (1 + len(null)))


def t_p_value(mean: float, sd: float, n: int, alternative: str = "two-sided") -> float:
    if n < 2 or not math.isfinite(mean) or not math.isfinite(sd):
        return math.nan
    if sd == 0:
        return 1.0 if mean == 0 else 0.0
    t = mean / (sd / math.sqrt(n))
    if alternative == "greater":
        return float(student_t.sf(t, n - 1))
    if alternative == "less":
        return float(student_t.cdf(t, n - 1))
    return float(2 * student_t.sf(abs(t), n - 1))


def seed_t_interval(per_seed, level: float = 0.95, min_seeds: int = MIN_SEEDS) -> Interval:
    """Student-t interval (df = S - 1) of the mean of one paired statistic per training seed,
    with the exact sign-flip p-value. No interval below ``min_seeds`` seeds, or when a seed's
    statistic is undefined (an infinite median: nothing found on half the images)."""
    d = np.asarray(per_seed, float)
    n = len(d)
    estimate = float(d.mean()) if n else math.nan
    base = dict(method="t", df=float(n - 1), n=n, level=level)
    if not np.isfinite(d).all():
        bad = int((~np.isfinite(d)).sum())
        return Interval(estimate, math.nan, math.nan, **base, reason=f"{bad} of {n} seeds undefined (inf or NaN)")
    if n < min_seeds:
        return Interval(estimate, math.nan, math.nan, **base, reason=f"{n} seed(s); an interval needs {min_seeds}")
    sd = float(d.std(ddof=1))
    half = float(student_t.ppf((1 + level) / 2, n - 1)) * sd / math.sqrt(n)
    return Interval(
        estimate,
        estimate - half,
        estimate + half,
        **base,
        p_value=sign_flip_p(d),
        p_t=t_p_value(estimate, sd, n),
        sd=sd,
    )


def _percentile_interval(estimate: float, boots: np.ndarray, level: float, method: str, n_seeds: int) -> Interval:
    boots = np.asarray(boots, float)
    finite = boots[~np.isnan(boots)]
    nan = len(boots) - len(finite)
    if len(finite) == 0:
        lo = hi = math.nan
    else:
        with np.errstate(invalid="ignore"):
            lo, hi = np.quantile(finite, [(1 - level) / 2, (1 + level) / 2])
    return Interval(
        estimate, float(lo), float(hi), method=method, n=n_seeds, nan_resamples=nan, resamples=len(boots), level=level
    )


def _check_pair(a, b) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"paired arrays must both be (seeds, images), got {a.shape} and {b.shape}")
    return a, b


def hierarchical_bootstrap(
    a: np.ndarray,
    b: np.ndarray,
    statistic: Callable[[np.ndarray, np.ndarray], np.ndarray],
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    min_seeds: int = MIN_SEEDS,
) -> Interval:
    """Percentile bootstrap of ``statistic(a, b)``: training seeds resampled (paired: the same
    seed draws for both models), then images within each drawn seed independently. Its
    coverage falls short of ``level`` at few seeds (module docstring); an option, not the default."""
    a, b = _check_pair(a, b)
    estimate = float(statistic(a, b))
    n_seeds, n_images = a.shape
    if n_seeds < min_seeds:
        return Interval(estimate, math.nan, math.nan, "hierarchical bootstrap", n=n_seeds, reason=f"{n_seeds} seed(s)")
    rng = np.random.default_rng(seed)
    boots = []
    for chunk in np.array_split(np.arange(n_boot), max(1, n_boot * n_seeds * n_images // 4_000_000)):
        seeds = rng.integers(0, n_seeds, size=(len(chunk), n_seeds))
        images = rng.integers(0, n_images, size=(len(chunk), n_seeds, n_images))
        boots.append(statistic(a[seeds[..., None], images], b[seeds[..., None], images]))
    return _percentile_interval(estimate, np.concatenate(boots), level, "hierarchical bootstrap", n_seeds)


def crossed_bootstrap(
    a: np.ndarray,
    b: np.ndarray,
    statistic: Callable[[np.ndarray, np.ndarray], np.ndarray],
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    min_seeds: int = MIN_SEEDS,
) -> Interval:
    """Percentile bootstrap with seeds and images crossed: seeds resampled, and one image resample
    shared by every seed of a draw (images are a random factor common to all seeds, as they are
    in the design). Wider than the t interval where image-by-model effects matter: the choice when
    the question is generalisation to new images."""
    a, b = _check_pair(a, b)
    estimate = float(statistic(a, b))
    n_seeds, n_images = a.shape
    if n_seeds < min_seeds:
        return Interval(estimate, math.nan, math.nan, "crossed bootstrap", n=n_seeds, reason=f"{n_seeds} seed(s)")
    rng = np.random.default_rng(seed)
    boots = []
    for chunk in np.array_split(np.arange(n_boot), max(1, n_boot * n_seeds * n_images // 4_000_000)):
        seeds = rng.integers(0, n_seeds, size=(len(chunk), n_seeds))
        images = rng.integers(0, n_images, size=(len(chunk), 1, n_images))
        boots.append(statistic(a[seeds[..., None], images], b[seeds[..., None], images]))
    return _percentile_interval(estimate, np.concatenate(boots), level, "crossed bootstrap", n_seeds)


INTERVALS = ("t", "hierarchical-bootstrap", "crossed-bootstrap")
DEFAULT_INTERVAL = "t"


def paired_interval(
    method: str,
    statistic: PairedStatistic,
    a: np.ndarray,
    b: np.ndarray,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> Interval:
    """The interval of a paired contrast by name (``INTERVALS``) from its per-image arrays."""
    a, b = _check_pair(a, b)
    if method == "t":
        return seed_t_interval(statistic.per_seed(a, b), level)
    boot = {"hierarchical-bootstrap": hierarchical_bootstrap, "crossed-bootstrap": crossed_bootstrap}[method]
    return boot(a, b, statistic, n_boot, seed, level)


# --------------------------------------------------------------------------- families, power, ranking
def holm(p_values) -> np.ndarray:
    """Holm-adjusted p-values (step-down, family-wise error); NaN entries stay NaN and are not
    counted in the family."""
    p = np.asarray(p_values, float)
    out = np.full(p.shape, math.nan)
    idx = np.flatnonzero(~np.isnan(p))
    m = len(idx)
    running = 0.0
    for rank, i in enumerate(idx[np.argsort(p[idx], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def minimal_detectable_effect(sd: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest true mean of the per-seed statistic that a two-sided paired t test at
    ``alpha`` detects with probability ``power`` over n seeds, given their SD (noncentral t)."""
    if n < 2 or not math.isfinite(sd):
        return math.nan
    if sd == 0:
        return 0.0
    df = n - 1
    crit = float(student_t.ppf(1 - alpha / 2, df))

    def shortfall(nc: float) -> float:  # the lower tail is negligible where scipy returns NaN for it
        return float(nct.sf(crit, df, nc) + np.nan_to_num(nct.cdf(-crit, df, nc))) - power

    return brentq(shortfall, 0.0, 60.0) * sd / math.sqrt(n)


def probability_best(
    per_seed: dict[str, np.ndarray], higher_is_better: bool = True, n_boot: int = 2000, seed: int = 0
) -> dict[str, float]:
    """Per model, the share of seed-bootstrap resamples in which its mean is the best (ties
    shared). ``per_seed``: model -> its values over the seeds all models share, in one seed
    order; the resample draws the same seeds for every model (they are paired)."""
    names = list(per_seed)
    values = np.stack([np.asarray(per_seed[m], float) for m in names])  # (models, seeds)
    if values.size == 0 or np.isnan(values).any():
        return {m: math.nan for m in names}
    n_seeds = values.shape[1]
    draws = np.random.default_rng(seed).integers(0, n_seeds, size=(n_boot, n_seeds))
    means = values[:, draws].mean(axis=-1)  # (models, n_boot)
    if not higher_is_better:
        means = -means
    best = means == means.max(axis=0, keepdims=True)
    share = (best / best.sum(axis=0, keepdims=True)).mean(axis=1)
    return {m: float(s) for m, s in zip(names, share)}
