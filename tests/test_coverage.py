"""Coverage of the paired-contrast intervals, by simulation of the regime the reports live in.

Per-image correctness comes from a logistic model: a shared image difficulty, a model-specific
image effect, training-seed effects (correlated 0.3 between the two models' runs of one seed),
and noise common to both models on a (seed, image). Two regimes: training seeds dominate (the
quick and repro suites), and image-by-model effects dominate. The estimand of a training-
procedure contrast is the expected paired difference over training seeds on the suite's images;
it is computed exactly per simulated experiment (Gauss-Hermite over the seed and noise terms).
A second estimand, the difference over new images too, is what the crossed bootstrap is for."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from bench.stats import DEFAULT_INTERVAL, MEAN_DIFFERENCE, paired_interval

pytestmark = pytest.mark.slow  # about 40 s

NODES, WEIGHTS = np.polynomial.hermite_e.hermegauss(60)  # E[f(Z)], Z ~ N(0, 1)
WEIGHTS = WEIGHTS / WEIGHTS.sum()


def expected_sigmoid(x: np.ndarray, sd: float) -> np.ndarray:
    """E[sigmoid(x + Z)], Z ~ N(0, sd^2), elementwise."""
    return (WEIGHTS / (1 + np.exp(-(x[..., None] + sd * NODES)))).sum(-1)


@dataclass(frozen=True)
class Regime:
    difficulty: float = 1.5  # SD of the image difficulty shared by both models (logit scale)
    image_by_model: float = 0.3  # SD of each model's own image effect
    seed: float = 1.0  # SD of a training run's shift (logit scale): a seed moves accuracy by about 15 points
    seed_correlation: float = 0.3  # between the two models' runs of one training seed
    common: float = 0.3  # SD of noise shared by both models on a (seed, image)
    base: float = 1.2  # intercept of the reference model (about 75 % accuracy)
    effect: float = 0.15  # the treatment's intercept shift
    images: int = 200  # evaluation images per experiment


SEEDS_DOMINATE = Regime()
IMAGES_DOMINATE = Regime(image_by_model=1.5, seed=0.05, common=0.1, images=100)


def simulate(regime: Regime, experiments: int, seeds: int, rng: np.random.Generator):
    """(a, b, conditional truth, population truth): a and b are (experiments, seeds, images)."""
    r, images = regime, regime.images
    d = rng.normal(0, r.difficulty, (experiments, 1, images))
    u = rng.normal(0, r.image_by_model, (2, experiments, 1, images))
    cov = r.seed**2 * np.array([[1, r.seed_correlation], [r.seed_correlation, 1]])
    v = rng.multivariate_normal([0, 0], cov, (experiments, seeds)).transpose(2, 0, 1)[..., None]
    w = rng.normal(0, r.common, (experiments, seeds, images))
    logits = [r.base + r.effect + d + u[0] + v[0] + w, r.base + d + u[1] + v[1] + w]
    a, b = (rng.random(x.shape) < 1 / (1 + np.exp(-x)) for x in logits)
    sd = np.hypot(r.seed, r.common)
    truth = (expected_sigmoid(r.base + r.effect + d + u[0], sd) - expected_sigmoid(r.base + d + u[1], sd)).mean(
        axis=(-2, -1)
    )
    return a.astype(float), b.astype(float), truth


def population_truth(regime: Regime, rng: np.random.Generator, n: int = 2_000_000) -> float:
    r = regime
    d, ua, ub = rng.normal(0, [[r.difficulty], [r.image_by_model], [r.image_by_model]], (3, n))
    sd = np.hypot(r.seed, r.common)
    return float((expected_sigmoid(r.base + r.effect + d + ua, sd) - expected_sigmoid(r.base + d + ub, sd)).mean())


def coverage(method: str, regime: Regime, seeds: int, experiments: int, n_boot: int = 400, seed: int = 0):
    """(coverage of the conditional truth, of the population truth, median width)."""
    rng = np.random.default_rng(seed)
    a, b, truth = simulate(regime, experiments, seeds, rng)
    pop = population_truth(regime, rng)
    hits, pop_hits, widths = 0, 0, []
    for k in range(experiments):
        ci = paired_interval(method, MEAN_DIFFERENCE, a[k], b[k], n_boot=n_boot, seed=k)
        hits += ci.low <= truth[k] <= ci.high
        pop_hits += ci.low <= pop <= ci.high
        widths.append(ci.high - ci.low)
    return hits / experiments, pop_hits / experiments, float(np.median(widths))


@pytest.mark.parametrize("seeds", [5, 10])
@pytest.mark.parametrize("regime", [SEEDS_DOMINATE, IMAGES_DOMINATE], ids=["seeds-dominate", "images-dominate"])
def test_the_default_interval_has_its_stated_coverage(regime, seeds):
    """1,000 simulated experiments: a correct 95 % interval covers at least 93 % (2.9 binomial
    SE below 95 %, so a correct method fails this with probability about 0.002)."""
    covered, _, _ = coverage(DEFAULT_INTERVAL, regime, seeds, experiments=1000)
    assert covered >= 0.93, f"{DEFAULT_INTERVAL} covers {covered:.3f} at {seeds} seeds"


def test_the_percentile_bootstrap_does_not_and_the_test_can_tell():
    """The old default (seeds, then images, resampled; percentile interval) covers far less than
    95 % where training seeds dominate: the coverage test above would fail it."""
    covered, _, _ = coverage("hierarchical-bootstrap", SEEDS_DOMINATE, seeds=5, experiments=400)
    assert covered < 0.91, f"hierarchical bootstrap covers {covered:.3f} at 5 seeds"


def test_the_crossed_bootstrap_is_the_one_for_new_images():
    """Where image-by-model effects dominate, the t interval is about these images; over new
    images too its coverage falls, and the crossed bootstrap (images a random factor) keeps it."""
    _, t_pop, t_width = coverage("t", IMAGES_DOMINATE, seeds=10, experiments=300)
    _, crossed_pop, crossed_width = coverage("crossed-bootstrap", IMAGES_DOMINATE, seeds=10, experiments=300)
    assert crossed_pop > t_pop + 0.1 and crossed_pop >= 0.9 and crossed_width > t_width
