"""Analyses from stored per-image outcomes: per-class accuracy and error consistency (kappa)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.evals.reporting import MetricId
from bench.report.analyses import (
    class_table,
    error_kappa,
    kappa_summary,
    kappa_table,
    middle_points,
    per_class_accuracy,
    worst_class_table,
)


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 4)), min_size=1, max_size=60))
@settings(max_examples=60, deadline=None)
def test_per_class_accuracy_is_the_accuracy_on_each_class_images(pairs):
    correct = np.array([c for c, _ in pairs], float)
    labels = np.array([k for _, k in pairs])
    acc = per_class_accuracy(correct, labels, 5)
    for k in range(5):
        mine = correct[labels == k]
        assert (math.isnan(acc[k]) and len(mine) == 0) or acc[k] == pytest.approx(mine.mean())


def test_kappa_is_one_for_the_same_errors_near_zero_for_independent_ones_and_negative_for_opposite():
    rng = np.random.default_rng(0)
    a = rng.random(20_000) < 0.7
    assert error_kappa(a, a) == pytest.approx(1.0)
    assert abs(error_kappa(a, rng.random(20_000) < 0.7)) < 0.03  # independent errors: chance agreement
    assert error_kappa(a, ~a) < -0.5
    assert math.isnan(error_kappa(np.ones(5), np.ones(5)))  # both always right: nothing to tell apart
    with pytest.raises(ValueError, match="same images"):
        error_kappa(np.ones(3), np.ones(4))


@given(st.lists(st.tuples(st.booleans(), st.booleans()), min_size=2, max_size=50))
@settings(max_examples=60, deadline=None)
def test_kappa_is_symmetric_and_at_most_one(pairs):
    a = np.array([x for x, _ in pairs], float)
    b = np.array([y for _, y in pairs], float)
    k = error_kappa(a, b)
    assert (math.isnan(k) and math.isnan(error_kappa(b, a))) or (
        k <= 1 + 1e-12 and k == pytest.approx(error_kappa(b, a))
    )


def test_tables_from_outcomes():
    clean, noise = MetricId("clean"), MetricId("noise-gaussian")
    labels = np.array([0, 0, 1, 1, 2, 2])
    examples = {
        ("a", 0, clean, None, "accuracy", ""): np.array([1, 1, 1, 0, 0, 0.0]),
        ("b", 0, clean, None, "accuracy", ""): np.array([1, 1, 1, 0, 0, 0.0]),
        ("a", 0, noise, 0.1, "accuracy", ""): np.array([1, 0, 1, 0.0]),  # a cell of the first 4 images
        ("b", 0, noise, 0.1, "accuracy", ""): np.array([0, 1, 0, 1.0]),
        ("a", 0, noise, 0.3, "accuracy", ""): np.array([0, 0, 0, 0.0]),
        ("b", 0, noise, 0.3, "accuracy", ""): np.array([0, 0, 0, 0.0]),
        ("a", 0, MetricId("minimal-l2"), None, "distance", ""): np.array([0.1, 0.2]),  # not an accuracy
    }
    classes = class_table(examples, labels, 3)
    a_clean = classes[(classes["model"] == "a") & (classes["evaluation"] == "clean")]
    assert a_clean["accuracy"].tolist() == [1.0, 0.5, 0.0] and a_clean["n_images"].tolist() == [2, 2, 2]
    a_noise = classes[(classes["model"] == "a") & (classes["param"] == 0.1)]
    assert a_noise["n_images"].tolist() == [2, 2, 0] and math.isnan(a_noise["accuracy"].iloc[2])

    points = middle_points(examples)
    assert points == [("clean", None), ("noise-gaussian", 0.1)]
    worst = worst_class_table(classes, ["a", "b"], points)
    assert worst[worst["evaluation"] == "clean"]["worst-class acc %"].tolist() == ["0.0", "0.0"]
    assert worst[worst["evaluation"] == "clean"]["worst class (mode)"].tolist() == [2, 2]

    kappas = kappa_table(examples, ["a", "b"])
    assert set(kappas["model"]) == {"a"} and set(kappas["reference"]) == {"b"}
    assert kappas[kappas["evaluation"] == "clean"]["kappa"].iloc[0] == pytest.approx(1.0)
    assert kappas[kappas["param"] == 0.1]["kappa"].iloc[0] == pytest.approx(-1.0)
    summary = kappa_summary(kappas, points)
    assert list(summary.columns) == ["model", "reference", "kappa clean", "kappa noise-gaussian 0.1", "seeds"]
    assert class_table(examples, None, 3).empty  # no labels (an old report folder): no table
