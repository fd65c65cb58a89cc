"""Matplotlib figures of a leaderboard (PNG, Agg backend). Each returns False when the suite
has nothing to plot for it."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from bench.models.resnet import TAPS


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    _plt().close(fig)


def accuracy_curves(summary: pd.DataFrame, prefix: str, xlabel: str, title: str, path: Path) -> bool:
    """Accuracy vs level (noise) or epsilon (PGD) per model, mean over seeds with a ± SEM band;
    one panel per evaluation with this prefix."""
    summary = summary[summary["statistic"] == "accuracy"]  # not a sanity probe
    kinds = [e for e in dict.fromkeys(summary["evaluation"]) if e.startswith(prefix)]
    if not kinds:
        return False
    plt = _plt()
    fig, axes = plt.subplots(1, len(kinds), figsize=(max(6.4, 4.6 * len(kinds)), 3.8), squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        for model in dict.fromkeys(summary["model"]):
            d = summary[(summary["evaluation"] == kind) & (summary["model"] == model)].sort_values("param")
            if d.empty:
                continue
            line, = ax.plot(d["param"], d["mean"] * 100, marker="o", ms=3, label=f"{model} ({d['regularizer'].iloc[0]})")
            sem = d["sem"].fillna(0) * 100
            if (d["n"] > 1).any():
                ax.fill_between(d["param"], d["mean"] * 100 - sem, d["mean"] * 100 + sem, alpha=0.2, color=line.get_color())
        ax.set_xlabel(f"{kind.split('-', 1)[1]} {xlabel}")
        ax.set_ylabel("accuracy %")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    _save(fig, path)
    return True


def corruption_severity(summary: pd.DataFrame, title: str, path: Path) -> bool:
    """Accuracy vs severity per model, averaged over the corruptions (each corruption's
    accuracies are in the leaderboard's corruption table and results.csv)."""
    c = summary[summary["evaluation"].str.startswith("corruption-") & (summary["statistic"] == "accuracy")]
    if c.empty:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for model in dict.fromkeys(c["model"]):
        d = c[c["model"] == model].groupby("param")["mean"].mean()
        ax.plot(d.index, d.values * 100, marker="o", ms=3, label=model)
    ax.set_xlabel("severity")
    ax.set_xticks([1, 2, 3, 4, 5])
    ax.set_ylabel("accuracy %")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=10)
    _save(fig, path)
    return True


def minimal_distributions(examples: dict, models: list[str], path: Path) -> bool:
    """Per norm, the fraction of images fooled at a perturbation size (the ECDF of the per-image
    minimal perturbations, pooled over seeds): 1 - robust accuracy vs epsilon."""
    norms = sorted({k[2] for k in examples if k[2].startswith("minimal-") and ":" not in k[2]})  # not per attack
    if not norms:
        return False
    plt = _plt()
    fig, axes = plt.subplots(1, len(norms), figsize=(max(6.4, 4.6 * len(norms)), 3.8), squeeze=False)
    for ax, norm in zip(axes[0], norms):
        for model in models:
            d = np.concatenate([v for k, v in examples.items() if k[0] == model and k[2] == norm] or [np.array([])])
            if d.size == 0:
                continue
            x = np.sort(d)
            finite = np.isfinite(x)
            ax.step(x[finite], np.arange(1, finite.sum() + 1) / len(x) * 100, where="post",
                    label=f"{model} (median {np.median(d):.3g})")
        ax.set_xlabel(f"{norm.split('-', 1)[1]} perturbation ([0,1] scale)")
        ax.set_ylabel("% images fooled")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("per-image minimal adversarial perturbations", fontsize=10)
    _save(fig, path)
    return True


def layer_weights(trainings: pd.DataFrame, path: Path) -> bool:
    """softmax(theta) at the best-validation epoch, mean over seeds, per regularized model."""
    if trainings.empty:
        return False
    weights = {}
    for model, g in trainings.groupby("model", sort=False):
        w = [json.loads(s) for s in g["layer_weights"] if json.loads(s)]
        if w:
            weights[model] = np.mean(w, axis=0)
    if not weights:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(TAPS), 3.4))
    width = 0.8 / len(weights)
    for k, (model, w) in enumerate(weights.items()):
        ax.bar(np.arange(len(TAPS)) + k * width, w, width, label=model)
    ax.set_xticks(np.arange(len(TAPS)) + 0.4 - width / 2, TAPS)
    ax.set_ylabel("layer weight γ")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    ax.set_title("learned layer weights softmax(θ) (mean over seeds)", fontsize=10)
    _save(fig, path)
    return True
