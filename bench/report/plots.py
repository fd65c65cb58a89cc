"""Matplotlib figures of a leaderboard (PNG, Agg backend), drawn from the evaluations'
declarations: curves naming the same figure share it (a panel each, or pooled into one),
summaries with a distribution plot get an ECDF of their per-image values."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from bench.evals.reporting import Curve, ReportSpec
from bench.report.summary import curves, rows_of


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    _plt().close(fig)


def _panels(n: int):
    plt = _plt()
    fig, axes = plt.subplots(1, n, figsize=(max(6.4, 4.6 * n), 3.8), squeeze=False)
    return fig, axes[0]


def _accuracy_axes(ax, xlabel: str, params=()) -> None:
    """Percent accuracy; a grid of whole numbers (corruption severities) gets whole-number ticks."""
    params = [p for p in params if p == p]
    if params and all(float(p).is_integer() for p in params):
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy %")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)


def curve_figures(
    summary: pd.DataFrame, specs: list[ReportSpec], suite: str, folder: Path, results: pd.DataFrame | None = None
) -> dict[str, Path]:
    """One PNG per figure named by the suite's curves: accuracy vs parameter per model, mean over
    seeds with a ± SEM band and, given ``results``, each training seed's curve faintly behind it
    (a panel per curve), or pooled: the mean over the figure's curves."""
    summary = summary[(summary["statistic"] == "accuracy") & (summary["attack"] == "")]  # not a sanity probe
    if results is not None:
        results = results[(results["statistic"] == "accuracy") & (results["attack"] == "")]
    groups: dict[str, list[Curve]] = {}
    for c in curves(specs):
        if not rows_of(summary, c.metric).empty:
            groups.setdefault(c.plot, []).append(c)
    written = {}
    for plot, group in groups.items():
        path = folder / f"{plot}.png"
        if group[0].pooled:
            fig, (ax,) = _panels(1)
            rows = pd.concat([rows_of(summary, c.metric) for c in group])
            for model in dict.fromkeys(rows["model"]):
                d = rows[rows["model"] == model].groupby("param")["mean"].mean()
                ax.plot(d.index, d.values * 100, marker="o", ms=3, label=model)
            _accuracy_axes(ax, group[0].axis, rows["param"])
            ax.legend(fontsize=7)
            ax.set_title(f"{suite}: {group[0].title}", fontsize=10)
        else:
            fig, axes = _panels(len(group))
            for ax, c in zip(axes, group):
                rows = rows_of(summary, c.metric)
                for model in dict.fromkeys(rows["model"]):
                    d = rows[rows["model"] == model].sort_values("param")
                    (line,) = ax.plot(
                        d["param"], d["mean"] * 100, marker="o", ms=3, label=f"{model} ({d['regularizer'].iloc[0]})"
                    )
                    if (d["n"] > 1).any():
                        sem = d["sem"].fillna(0) * 100
                        ax.fill_between(
                            d["param"], d["mean"] * 100 - sem, d["mean"] * 100 + sem, alpha=0.2, color=line.get_color()
                        )
                        seeds = rows_of(results, c.metric) if results is not None else pd.DataFrame()
                        for _, s in seeds[seeds["model"] == model].groupby("seed") if len(seeds) else []:
                            s = s.sort_values("param")
                            ax.plot(s["param"], s["value"] * 100, lw=0.6, alpha=0.35, color=line.get_color())
                _accuracy_axes(ax, c.axis, rows["param"])
            axes[0].legend(fontsize=7)
            fig.suptitle(f"{suite}: {group[0].title}", fontsize=10)
        _save(fig, path)
        written[path.name] = path
    return written


def distribution_figures(examples: dict, models: list[str], specs: list[ReportSpec], folder: Path) -> dict[str, Path]:
    """Per summary with a distribution plot, the fraction of images at or below each per-image
    value (for minimal perturbations: fooled at that size), pooled over seeds."""
    groups: dict[str, list] = {}
    for s in (x for spec in specs for x in spec.summaries if x.distribution_plot):
        if any(k[2] == s.metric and k[4] == s.examples and k[5] == "" for k in examples):
            groups.setdefault(s.distribution_plot, []).append(s)
    written = {}
    for plot, group in groups.items():
        fig, axes = _panels(len(group))
        for ax, s in zip(axes, group):
            for model in models:
                values = [
                    v
                    for k, v in examples.items()
                    if k[0] == model and k[2] == s.metric and k[4] == s.examples and k[5] == ""
                ]
                d = np.concatenate(values or [np.array([])])
                if d.size == 0:
                    continue
                x = np.sort(d)
                finite = np.isfinite(x)
                ax.step(
                    x[finite],
                    np.arange(1, finite.sum() + 1) / len(x) * 100,
                    where="post",
                    label=f"{model} (median {np.median(d):.3g})",
                )
            ax.set_xlabel(f"{s.column} per image")
            ax.set_ylabel("% images at or below")
            ax.set_ylim(0, 100)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        fig.suptitle("per-image distributions (ECDF, pooled over seeds)", fontsize=10)
        path = folder / f"{plot}.png"
        _save(fig, path)
        written[path.name] = path
    return written


def layer_weights(trainings: pd.DataFrame, path: Path) -> bool:
    """softmax(theta) at the best-validation epoch, mean over seeds, per regularized model."""
    if trainings.empty:
        return False
    weights, taps = {}, []
    for model, g in trainings.groupby("model", sort=False):
        w = [json.loads(s) for s in g["layer_weights"] if json.loads(s)]
        if w:
            weights[model] = np.mean(w, axis=0)
            taps = json.loads(g["taps"].iloc[0]) or [f"tap {i}" for i in range(len(w[0]))]
    if not weights:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(taps), 3.4))
    width = 0.8 / len(weights)
    for k, (model, w) in enumerate(weights.items()):
        ax.bar(np.arange(len(taps)) + k * width, w, width, label=model)
    ax.set_xticks(np.arange(len(taps)) + 0.4 - width / 2, taps)
    ax.set_ylabel("layer weight γ")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    ax.set_title("learned layer weights softmax(θ) (mean over seeds)", fontsize=10)
    _save(fig, path)
    return True
