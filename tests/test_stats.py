import math

import numpy as np
import pytest

from bench.stats import (
    curve_auc,
    hierarchical_bootstrap,
    mcnemar,
    mean_difference,
    mean_sem,
    median_shift,
    paired_bootstrap,
    per_image_auc,
    ranks,
)


def test_mean_sem_known_values():
    m, s, n = mean_sem([1.0, 2.0, 3.0, 4.0])
    assert (m, n) == (2.5, 4) and s == pytest.approx(math.sqrt(5 / 3) / 2)
    assert math.isnan(mean_sem([0.7])[1]) and mean_sem([0.7])[0] == 0.7


def test_curve_auc_is_mean_accuracy_over_the_range():
    assert curve_auc([0, 0.5, 1.0], [1.0, 0.5, 0.0]) == pytest.approx(0.5)
    assert curve_auc([0.0, 0.1, 0.3], [1.0, 1.0, 0.0]) == pytest.approx((0.1 * 1 + 0.2 * 0.5) / 0.3)
    assert curve_auc([0.3, 0.0, 0.1], [0.0, 1.0, 1.0]) == pytest.approx(curve_auc([0.0, 0.1, 0.3], [1.0, 1.0, 0.0]))
    assert curve_auc([0.2], [0.4]) == 0.4


def test_per_image_auc_averages_to_the_curve_auc():
    rng = np.random.default_rng(0)
    levels = [0.0, 0.05, 0.2, 0.5]
    correct = rng.random((4, 30)) < 0.6
    assert per_image_auc(levels, correct).mean() == pytest.approx(curve_auc(levels, correct.mean(axis=1)))
    stacked = np.stack([correct, ~correct])  # (seeds, levels, images)
    assert per_image_auc(levels, stacked).shape == (2, 30)


def test_mcnemar_exact_binomial_known_table():
    a = np.array([1] * 10 + [0] * 2 + [1] * 20 + [0] * 5, bool)
    b = np.array([0] * 10 + [1] * 2 + [1] * 20 + [0] * 5, bool)
    r = mcnemar(a, b)
    assert (r.a_only, r.b_only) == (10, 2)
    assert r.p_value == pytest.approx(0.03857421875)  # 2 * P(X <= 2), X ~ Bin(12, 1/2)
    assert mcnemar(a, a).p_value == 1.0


def test_bootstrap_is_seeded_and_exact_on_constant_differences():
    a = np.ones((2, 50))
    b = np.zeros((2, 50))
    ci = paired_bootstrap(a, b, mean_difference, n_boot=200, seed=1)
    assert (ci.estimate, ci.low, ci.high) == (1.0, 1.0, 1.0)
    rng = np.random.default_rng(3)
    a, b = rng.random((3, 40)), rng.random((3, 40))
    one = paired_bootstrap(a, b, mean_difference, n_boot=500, seed=7)
    assert one == paired_bootstrap(a, b, mean_difference, n_boot=500, seed=7)
    assert one.low < one.estimate < one.high
    assert one.estimate == pytest.approx((a - b).mean())
    with pytest.raises(ValueError):
        paired_bootstrap(a, b[:, :10], mean_difference)


def test_bootstrap_ci_covers_a_known_shift():
    rng = np.random.default_rng(5)
    b = rng.random((1, 400))
    a = b + 0.1 + rng.normal(0, 0.05, (1, 400))
    ci = paired_bootstrap(a, b, mean_difference, n_boot=1000, seed=0)
    assert ci.low < 0.1 < ci.high and ci.high - ci.low < 0.02


def test_median_shift_tolerates_not_found():
    a = np.array([[0.2, 0.4, np.inf]])
    b = np.array([[0.1, 0.3, 0.5]])
    assert median_shift(a, b) == pytest.approx(0.1)


def test_ranks_with_ties_and_direction():
    assert ranks([0.9, 0.8, 0.9, float("nan")]) == [1, 3, 1, 4]
    assert ranks([0.3, 0.1, 0.2], higher_is_better=False) == [3, 1, 2]


def test_hierarchical_bootstrap_sees_the_seed_variance_an_image_bootstrap_hides():
    """Synthetic: no true difference between the training procedures, but each training seed
    shifts a model's accuracy by a lot (seed variance dominates). The image-only interval
    excludes 0 (a false finding); the seed-and-image interval does not."""
    rng = np.random.default_rng(0)
    images = rng.random(1000) < 0.7

    def model(shift):  # per-image correctness of one trained model: the shared images, moved by its seed
        return (rng.random(1000) < np.clip(0.7 + shift, 0, 1)) | (images & (rng.random(1000) < 0.3))

    a = np.stack([model(s) for s in (0.10, -0.05, 0.12, -0.06, 0.08)]).astype(float)  # seed draws of one procedure
    b = np.stack([model(s) for s in (-0.10, 0.05, -0.13, 0.06, -0.07)]).astype(float)  # and of the other
    old = paired_bootstrap(a, b, mean_difference, n_boot=1000, seed=0)
    new = hierarchical_bootstrap(a, b, mean_difference, n_boot=1000, seed=0)
    assert old.estimate == new.estimate
    assert not (old.low <= 0 <= old.high)  # the old interval claims an effect
    assert new.low <= 0 <= new.high and (new.high - new.low) > 3 * (old.high - old.low)
    assert new == hierarchical_bootstrap(a, b, mean_difference, n_boot=1000, seed=0)  # seeded


def test_hierarchical_bootstrap_needs_three_seeds_and_covers_a_real_effect():
    rng = np.random.default_rng(1)
    b = rng.random((2, 300))
    ci = hierarchical_bootstrap(b + 0.1, b, mean_difference, n_boot=200)
    assert ci.estimate == pytest.approx(0.1) and math.isnan(ci.low) and math.isnan(ci.high)
    b = rng.random((6, 300))
    a = b + 0.1 + rng.normal(0, 0.01, (6, 1)) + rng.normal(0, 0.05, (6, 300))
    ci = hierarchical_bootstrap(a, b, mean_difference, n_boot=500)
    assert ci.low < 0.1 < ci.high and ci.low > 0.05
