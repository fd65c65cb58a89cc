"""Figures a researcher reads with the eyes, drawn from a leaderboard's own tables (no evaluation
re-run): a forest plot of every paired contrast with its interval (primary endpoints marked),
clean vs robust and brain similarity vs robustness scatters with a point per training seed, and a
heatmap of the models over the curves a figure pools (the corruptions). Which columns are
robustness, similarity or pooled comes from the evaluations' declarations, never their names."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from bench.evals.reporting import ReportSpec
from bench.report.plots import _panels, _plt, _save
from bench.report.summary import curves, headline_per_seed, rows_of

# contrasts on a fraction (accuracy, AUC) are drawn in points, a log ratio as the % change it means
_UNITS = {"accuracy": ("pp", 100.0), "AUC": ("pp", 100.0), "log ratio of medians": ("% change", None)}


def _shown(values: np.ndarray, scale: float | None) -> np.ndarray:
    """A contrast in the unit it is read in: points, or a log ratio as its % change."""
    return (np.exp(values) - 1) * 100 if scale is None else values * scale


def forest_plot(deltas: pd.DataFrame, path: Path) -> bool:
    """Every seed-level contrast of a summary (model - reference: clean accuracy, curve AUCs,
    median ratios; not each grid point) with its interval, one panel per kind of contrast; the
    card's primary endpoints in red. Contrasts without an interval (fewer than 3 seeds) are not
    drawn."""
    d = deltas[(deltas["scope"] == "training procedure") & deltas["param"].isna()]  # summaries, not grid points
    d = d.dropna(subset=["ci_low", "ci_high"])
    if d.empty:
        return False
    kinds = list(dict.fromkeys(d["summary"]))
    fig, axes = _panels(len(kinds))
    tallest = max((d["summary"] == k).sum() for k in kinds)
    fig.set_size_inches(max(6.4, 5.2 * len(kinds)), 1.4 + 0.26 * tallest)
    for ax, kind in zip(axes, kinds):
        rows = d[d["summary"] == kind].iloc[::-1]
        unit, scale = _UNITS.get(kind, ("", 1.0))
        y = np.arange(len(rows))
        mid, lo, hi = (_shown(rows[c].to_numpy(float), scale) for c in ("delta", "ci_low", "ci_high"))
        primary = (rows["role"] == "primary").to_numpy()
        colors = np.where(primary, "tab:red", "tab:blue")
        ax.hlines(y, lo, hi, colors=colors, lw=1.6)
        ax.scatter(mid, y, c=colors, s=14, zorder=3)
        ax.axvline(0, color="k", lw=0.8)
        labels = [
            f"{'★ ' if p else ''}{r.model} − {r.reference}: {r.evaluation}"
            + ("" if pd.isna(r.param) else f" {r.param:g}")
            for r, p in zip(rows.itertuples(), primary)
        ]
        ax.set_yticks(y, labels, fontsize=7)
        ax.set_xlabel(f"{kind} difference ({unit})" if unit else f"{kind} difference")
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle("paired contrasts over training seeds with their intervals (★ red: primary endpoint)", fontsize=10)
    _save(fig, path)
    return True


def _scatter(per_seed: pd.DataFrame, x: str, ys: list[str], path: Path, title: str) -> bool:
    wide = per_seed.pivot_table(index=["model", "seed"], columns="column", values="value", sort=False)
    ys = [c for c in ys if c in wide.columns and c != x]
    if x not in wide.columns or not ys:
        return False
    fig, axes = _panels(len(ys))
    for ax, col in zip(axes, ys):
        for k, model in enumerate(dict.fromkeys(wide.index.get_level_values("model"))):
            pts = wide.loc[model][[x, col]].dropna()
            if pts.empty:
                continue
            color = f"C{k % 10}"
            ax.scatter(pts[x], pts[col], s=14, alpha=0.55, color=color)
            ax.scatter(pts[x].mean(), pts[col].mean(), s=70, marker="D", color=color, edgecolor="k", label=model)
        ax.set_xlabel(x)
        ax.set_ylabel(col)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    _save(fig, path)
    return True


def scatter_figures(results: pd.DataFrame, specs: list[ReportSpec], folder: Path) -> dict[str, Path]:
    """clean vs each headline robustness AUC (RobustBench's view) and, where the suite measures
    similarity to a target, that similarity vs each robustness AUC (the paper's question): a
    small point per training seed, a diamond at the model's mean."""
    per_seed = headline_per_seed(results, specs)
    robust = [f"{c.metric.label} AUC" for c in curves(specs) if c.headline]
    clean = next((s.column for spec in specs for s in spec.summaries if s.robustbench == "clean_acc"), None)
    similarity = [s.column for spec in specs for s in spec.summaries if s.target_similarity]
    out = {}
    for name, x, title in [
        ("clean_vs_robust.png", clean, "clean accuracy vs robustness (AUC over each curve's grid), per training seed"),
        *[
            (f"similarity_vs_robust_{k}.png", col, f"{col} (similarity to the target) vs robustness, per training seed")
            for k, col in enumerate(similarity)
        ],
    ]:
        if x is not None and _scatter(per_seed, x, robust, folder / name, title):
            out[name] = folder / name
    return out


def pooled_heatmaps(results: pd.DataFrame, specs: list[ReportSpec], models: list[str], folder: Path) -> dict[str, Path]:
    """Per figure whose curves are pooled (the corruptions): models x curves, the accuracy mean
    over the grid and the training seeds, in %."""
    groups: dict[str, list] = {}
    for c in curves(specs):
        if c.pooled:
            groups.setdefault(c.plot, []).append(c)
    acc = results[(results["statistic"] == "accuracy") & (results["attack"] == "")]
    out = {}
    for plot, group in groups.items():
        prefix = len(os.path.commonprefix([c.metric.label for c in group])) if len(group) > 1 else 0
        table = pd.DataFrame(
            {c.metric.label[prefix:]: rows_of(acc, c.metric).groupby("model")["value"].mean() for c in group}
        ).reindex([m for m in models if m in set(acc["model"])])
        if table.empty or table.isna().all().all():
            continue
        plt = _plt()
        fig, ax = plt.subplots(figsize=(1.6 + 0.55 * table.shape[1], 1.2 + 0.4 * table.shape[0]))
        image = ax.imshow(table.to_numpy() * 100, vmin=0, vmax=100, cmap="viridis", aspect="auto")
        ax.set_xticks(range(table.shape[1]), table.columns, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(table.shape[0]), table.index, fontsize=7)
        for (i, j), v in np.ndenumerate(table.to_numpy()):
            if not math.isnan(v):
                ax.text(j, i, f"{v * 100:.0f}", ha="center", va="center", fontsize=6, color="w" if v < 0.6 else "k")
        fig.colorbar(image, ax=ax, label="accuracy %")
        ax.set_title(f"{plot}: accuracy % per model and type (mean over the grid and seeds)", fontsize=9)
        path = folder / f"{plot}_heatmap.png"
        _save(fig, path)
        out[path.name] = path
    return out
