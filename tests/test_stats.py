import math

import numpy as np
import pytest

from bench.stats import (
    MEAN_DIFFERENCE,
    MEDIAN_SHIFT,
    curve_auc,
    hierarchical_bootstrap,
    holm,
    mcnemar,
    mean_sem,
    median_shift,
    minimal_detectable_effect,
    paired_interval,
    per_image_auc,
    probability_best,
    seed_t_interval,
    sign_flip_p,
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


def test_median_shift_tolerates_not_found():
    a = np.array([[0.2, 0.4, np.inf]])
    b = np.array([[0.1, 0.3, 0.5]])
    assert median_shift(a, b) == pytest.approx(0.1)


def test_seed_t_interval_matches_a_paired_t_test_and_the_sign_flip_test_is_exact():
    from scipy.stats import ttest_1samp

    d = np.array([0.05, -0.02, 0.11, 0.07, 0.01, 0.09, -0.03, 0.04])
    ci = seed_t_interval(d)
    ref = ttest_1samp(d, 0.0)
    low, high = ref.confidence_interval(0.95)
    assert (ci.low, ci.high) == (pytest.approx(low), pytest.approx(high)) and ci.p_t == pytest.approx(ref.pvalue)
    assert ci.df == 7 and ci.label == "t, df 7" and ci.sd == pytest.approx(d.std(ddof=1))
    # exact: of the 2^8 sign patterns, those whose |mean| reaches the observed one
    patterns = np.array(np.meshgrid(*[[1, -1]] * 8)).reshape(8, -1).T
    assert ci.p_value == pytest.approx(np.mean(np.abs(patterns @ d) >= abs(d.sum()) - 1e-12))
    assert sign_flip_p([0.1, 0.2, 0.3]) == 0.25  # 3 seeds all positive: the smallest p there is
    assert sign_flip_p([0.1, 0.2, 0.3], "greater") == 0.125
    big = np.random.default_rng(0).normal(0.5, 1, 30)  # above 16 seeds: Monte Carlo, seeded
    assert sign_flip_p(big) == sign_flip_p(big) and 0 < sign_flip_p(big) < 0.05


def test_no_interval_below_three_seeds_or_for_an_undefined_seed():
    assert math.isnan(seed_t_interval([0.1, 0.2]).low) and "2 seed(s)" in seed_t_interval([0.1, 0.2]).reason
    undefined = seed_t_interval([0.1, np.inf, 0.2, 0.3])
    assert math.isnan(undefined.high) and "1 of 4 seeds" in undefined.reason


def test_bootstraps_are_seeded_count_nan_resamples_and_cross_images():
    rng = np.random.default_rng(3)
    a, b = rng.random((4, 40)), rng.random((4, 40))
    for method in ("hierarchical-bootstrap", "crossed-bootstrap"):
        one = paired_interval(method, MEAN_DIFFERENCE, a, b, n_boot=300, seed=7)
        assert one == paired_interval(method, MEAN_DIFFERENCE, a, b, n_boot=300, seed=7)
        assert one.low < one.estimate < one.high and one.estimate == pytest.approx((a - b).mean())
    with pytest.raises(ValueError):
        paired_interval("crossed-bootstrap", MEAN_DIFFERENCE, a, b[:, :10])
    # a median shift where a resample draws only inf distances is undefined: counted, not hidden
    a = np.array([[np.inf, np.inf, 0.1], [np.inf, np.inf, 0.2], [np.inf, 0.3, 0.2]])
    b = np.array([[np.inf, np.inf, 0.4], [0.2, np.inf, 0.1], [np.inf, 0.1, 0.2]])
    ci = hierarchical_bootstrap(a, b, MEDIAN_SHIFT, n_boot=500, seed=0)
    assert 0 < ci.nan_resamples < 500 and f"{ci.nan_resamples} NaN excluded" in ci.label


def test_holm_adjusts_step_down_and_ignores_nan():
    p = holm([0.01, 0.04, np.nan, 0.03])
    assert p[0] == pytest.approx(0.03) and p[3] == pytest.approx(0.06) and p[1] == pytest.approx(0.06)
    assert math.isnan(p[2])


def test_minimal_detectable_effect_has_the_power_it_claims():
    rng = np.random.default_rng(0)
    for n in (3, 5, 10):
        mde = minimal_detectable_effect(1.0, n)
        d = rng.normal(mde, 1.0, (4000, n))
        from scipy.stats import ttest_1samp

        assert np.mean(ttest_1samp(d, 0.0, axis=1).pvalue < 0.05) == pytest.approx(0.8, abs=0.03)


def test_probability_best_is_paired_and_sums_to_one():
    p = probability_best({"a": [0.9, 0.8, 0.85], "b": [0.5, 0.4, 0.45], "c": [0.91, 0.79, 0.86]})
    assert sum(p.values()) == pytest.approx(1.0) and p["b"] == 0.0 and p["a"] > 0 and p["c"] > 0
    assert probability_best({"a": [1.0, 2.0], "b": [3.0, 4.0]}, higher_is_better=False)["a"] == 1.0
