"""Analyses of the per-image outcomes a suite already stored, with no evaluation re-run: accuracy
per class and of the worst class, and error consistency between two models on the same images
(Cohen's kappa over correct/wrong, as Geirhos et al. 2020 and model-vs-human report it: 0 is the
agreement two independent classifiers of those accuracies reach by chance, 1 the same errors).
Pure functions of the outcomes and the evaluation images' labels."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

CLASS_COLUMNS = ["model", "seed", "evaluation", "param", "class", "accuracy", "n_images"]
KAPPA_COLUMNS = ["model", "reference", "seed", "evaluation", "param", "kappa", "n_images"]


def per_class_accuracy(correct: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Accuracy on each class's images (NaN for a class with none among them)."""
    correct, labels = np.asarray(correct, float), np.asarray(labels, int)
    count = np.bincount(labels, minlength=n_classes).astype(float)
    hits = np.bincount(labels, weights=correct, minlength=n_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, hits / count, np.nan)


def error_kappa(a: np.ndarray, b: np.ndarray) -> float:
    """Cohen's kappa of two models' per-image correctness: (observed agreement - the agreement
    expected from their accuracies alone) / (1 - expected). NaN where the expected agreement is 1
    (each model all right or all wrong: nothing to tell apart)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) != len(b) or not len(a):
        raise ValueError(f"error consistency needs the same images: {len(a)} and {len(b)} outcomes")
    pa, pb = a.mean(), b.mean()
    observed = float(np.mean(a == b))
    expected = pa * pb + (1 - pa) * (1 - pb)
    return math.nan if expected >= 1 else (observed - expected) / (1 - expected)


def _accuracy_outcomes(examples: dict) -> dict:
    """(model, seed, evaluation label, param) -> per-image correctness, for every accuracy point."""
    out = {}
    for (model, seed, metric, param, statistic, attack), values in examples.items():
        if statistic == "accuracy" and not attack:
            out[(model, seed, metric.label, param)] = np.asarray(values, float)
    return out


def class_table(examples: dict, labels: np.ndarray | None, n_classes: int) -> pd.DataFrame:
    """Per model, seed and accuracy point: each class's accuracy (the evaluation images are the
    suite's subset, whose first n images every cell of n images evaluates)."""
    if labels is None:
        return pd.DataFrame(columns=CLASS_COLUMNS)
    rows = []
    for (model, seed, evaluation, param), correct in _accuracy_outcomes(examples).items():
        lab = labels[: len(correct)]
        counts = np.bincount(lab, minlength=n_classes)
        for k, acc in enumerate(per_class_accuracy(correct, lab, n_classes)):
            rows.append([model, seed, evaluation, param, k, acc, int(counts[k])])
    return pd.DataFrame(rows, columns=CLASS_COLUMNS)


def worst_class_table(classes: pd.DataFrame, models: list[str], points: list[tuple[str, float | None]]) -> pd.DataFrame:
    """Per model at the given accuracy points: the mean over seeds of the worst class's accuracy
    (in %), which class is worst most often, and the fewest images a class has there (a worst
    class of few images is a noisy number)."""
    if classes.empty:
        return pd.DataFrame()
    c = classes.dropna(subset=["accuracy"])
    keep = np.zeros(len(c), bool)
    for evaluation, param in points:
        keep |= ((c["evaluation"] == evaluation) & _same_param(c["param"], param)).to_numpy()
    c = c[keep]
    if c.empty:
        return pd.DataFrame()
    per_seed = c.groupby(["model", "evaluation", "param", "seed"], dropna=False)
    worst = per_seed["accuracy"].min().rename("worst")
    which = per_seed.apply(lambda g: int(g.loc[g["accuracy"].idxmin(), "class"]), include_groups=False).rename("class")
    table = pd.concat([worst, which], axis=1).reset_index()
    out = (
        table.groupby(["model", "evaluation", "param"], dropna=False)
        .agg(worst=("worst", "mean"), cls=("class", lambda s: int(s.mode().iloc[0])), seeds=("seed", "nunique"))
        .reset_index()
    )
    fewest = c.groupby(["model", "evaluation", "param"], dropna=False)["n_images"].min().rename("fewest")
    out = out.join(fewest, on=["model", "evaluation", "param"])
    out["model"] = pd.Categorical(out["model"], models, ordered=True)
    out = out.sort_values(["evaluation", "param", "model"]).reset_index(drop=True)
    return pd.DataFrame(
        {
            "model": out["model"].astype(str),
            "evaluation": out["evaluation"],
            "param": ["" if pd.isna(p) else f"{p:g}" for p in out["param"]],
            "worst-class acc %": [f"{v * 100:.1f}" for v in out["worst"]],
            "worst class (mode)": out["cls"],
            "images per class (min)": out["fewest"],
            "seeds": out["seeds"],
        }
    )


def kappa_table(examples: dict, models: list[str]) -> pd.DataFrame:
    """Error consistency of every pair of models on the same images, per training seed and
    accuracy point."""
    outcomes = _accuracy_outcomes(examples)
    rows = []
    for (model, seed, evaluation, param), a in outcomes.items():
        for reference in models[models.index(model) + 1 :] if model in models else []:
            b = outcomes.get((reference, seed, evaluation, param))
            if b is not None and len(b) == len(a):
                rows.append([model, reference, seed, evaluation, param, error_kappa(a, b), len(a)])
    return pd.DataFrame(rows, columns=KAPPA_COLUMNS)


def kappa_summary(kappas: pd.DataFrame, points: list[tuple[str, float | None]]) -> pd.DataFrame:
    """The mean kappa over seeds of every model pair at the given accuracy points (clean, and
    each curve at the middle of its grid), one column per point."""
    if kappas.empty:
        return pd.DataFrame()
    out = None
    for evaluation, param in points:
        sel = kappas[(kappas["evaluation"] == evaluation) & _same_param(kappas["param"], param)]
        if sel.empty:
            continue
        name = evaluation if param is None or pd.isna(param) else f"{evaluation} {param:g}"
        col = sel.groupby(["model", "reference"], sort=False)["kappa"].mean().rename(f"kappa {name}")
        out = col.to_frame() if out is None else out.join(col, how="outer")
    if out is None:
        return pd.DataFrame()
    out = out.join(kappas.groupby(["model", "reference"], sort=False)["seed"].nunique().rename("seeds"))
    return out.reset_index().round(3)


def _same_param(series: pd.Series, param: float | None) -> pd.Series:
    return series.isna() if param is None or pd.isna(param) else np.isclose(series.astype(float), param)


def middle_points(examples: dict) -> list[tuple[str, float | None]]:
    """Clean, and each accuracy curve at the middle of its positive grid (at its largest point
    every model is near 0: no class or error pattern is left to compare)."""
    grids: dict[str, set] = {}
    for _, _, evaluation, param in _accuracy_outcomes(examples):
        none = param is None or (isinstance(param, float) and math.isnan(param))
        grids.setdefault(evaluation, set()).update(() if none else (param,))
    points = []
    for evaluation, grid in grids.items():
        positive = sorted(p for p in grid if p > 0)
        points.append((evaluation, positive[(len(positive) - 1) // 2] if positive else None))
    return sorted(points, key=lambda kv: (kv[0] != "clean", kv[0]))


__all__ = [
    "class_table",
    "error_kappa",
    "middle_points",
    "kappa_summary",
    "kappa_table",
    "per_class_accuracy",
    "worst_class_table",
]
