"""``bench sweep``: choose a regularized card's alpha (and threshold, for thresholded targets) as
the follow-up paper does (Attias et al. 2024): over a grid, trained over several seeds, keep
the values whose regularized/baseline clean accuracy is at least 0.9 ("healthy") and whose
robust accuracy ratio at a stated noise level is above 1; report the whole grid. Scored on the
models' validation split, never on test images: a suite that then reports the chosen value on
its test subset carries no winner's-curse optimism from the choice.

The grid is an ordinary suite built in memory (variant cards of the model plus its baseline,
Gaussian noise at 0 and the stated level), run through the same runner and store: trainings and
cells are reused and an interrupted sweep resumes."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench.cards import EvalSpec, ModelCard, SubsetSpec, SuiteCard
from bench.errors import BenchError
from bench.evals.noise import NoiseParams
from bench.plan import RunSpec
from bench.runtime import Progress, Silent
from bench.stats import mean_sem
from bench.store import ResultStore
from bench.suite.runner import run_suite

CLEAN_RATIO = 0.9  # the follow-up's rule: regularized clean accuracy >= 0.9 x the baseline's


@dataclass(frozen=True)
class SweepPoint:
    alpha: float
    threshold: float | None
    model: str  # the variant card's name


def variant(card: ModelCard, alpha: float, threshold: float | None) -> ModelCard:
    reg = card.regularizer
    target = reg.target
    if threshold is not None:
        target = dataclasses.replace(target, params=dataclasses.replace(target.params, threshold=threshold))
    name = f"{card.name}@alpha={alpha:g}" + (f",threshold={threshold:g}" if threshold is not None else "")
    return dataclasses.replace(card, name=name, regularizer=dataclasses.replace(reg, alpha=alpha, target=target))


def baseline(card: ModelCard) -> ModelCard:
    return dataclasses.replace(card, name=f"{card.name}@none", regularizer=None)


def sweep_suite(
    card: ModelCard,
    alphas: list[float],
    thresholds: list[float | None],
    seeds: tuple[int, ...],
    level: float,
    images: int,
) -> tuple[SuiteCard, list[SweepPoint]]:
    if card.regularizer is None:
        raise BenchError(f"{card.path}: {card.name} has no regularizer to sweep")
    if any(t is not None for t in thresholds) and not hasattr(card.regularizer.target.params, "threshold"):
        raise BenchError(f"--threshold: the target of {card.name} ({card.regularizer.target.kind}) has no threshold")
    points = [SweepPoint(a, t, variant(card, a, t).name) for t in thresholds for a in alphas]
    cards = [baseline(card)] + [variant(card, p.alpha, p.threshold) for p in points]
    suite = SuiteCard(
        version=1,
        dataset=card.dataset,
        models=tuple(c.name for c in cards),
        subset=SubsetSpec(images, 0, "validation"),
        seeds=seeds,
        evaluations=(EvalSpec("noise", NoiseParams("gaussian", (0.0, level))),),
        description=f"alpha sweep of {card.name}",
        name=f"sweep-{card.name}",
        cards=tuple(cards),
    )
    return suite, points


def sweep_table(results: pd.DataFrame, suite: SuiteCard, points: list[SweepPoint], level: float) -> pd.DataFrame:
    """Per grid point: clean and robust accuracy (mean ± SEM over seeds), their ratios to the
    baseline's means, and whether it is healthy and passes the rule."""

    def per_seed(model: str, param: float) -> pd.Series:
        r = results[
            (results["model"] == model)
            & (results["metric"] == "noise-gaussian")
            & (results["param"] == param)
            & (results["statistic"] == "accuracy")
        ]
        return r.set_index("seed")["value"]

    base = suite.models[0]
    base_clean, base_robust = per_seed(base, 0.0).mean(), per_seed(base, level).mean()
    rows = [
        {
            "alpha": 0.0,
            "threshold": None,
            "model": base,
            "seeds": len(per_seed(base, 0.0)),
            "clean": base_clean,
            "clean sem": mean_sem(per_seed(base, 0.0))[1],
            "robust": base_robust,
            "robust sem": mean_sem(per_seed(base, level))[1],
            "clean ratio": 1.0,
            "robust ratio": 1.0,
            "healthy": True,
            "passes": False,
        }
    ]
    for p in points:
        clean, robust = per_seed(p.model, 0.0), per_seed(p.model, level)
        clean_ratio = clean.mean() / base_clean if base_clean else math.nan
        robust_ratio = robust.mean() / base_robust if base_robust else math.nan
        rows.append(
            {
                "alpha": p.alpha,
                "threshold": p.threshold,
                "model": p.model,
                "seeds": len(clean),
                "clean": clean.mean(),
                "clean sem": mean_sem(clean)[1],
                "robust": robust.mean(),
                "robust sem": mean_sem(robust)[1],
                "clean ratio": clean_ratio,
                "robust ratio": robust_ratio,
                "healthy": bool(clean_ratio >= CLEAN_RATIO),
                "passes": bool(clean_ratio >= CLEAN_RATIO and robust_ratio > 1),
            }
        )
    return pd.DataFrame(rows)


def choose(table: pd.DataFrame) -> pd.Series | None:
    """The passing point with the largest robust ratio; None when no point passes."""
    passing = table[table["passes"]]
    return None if passing.empty else passing.sort_values(["robust ratio", "alpha"], ascending=[False, False]).iloc[0]


def run_sweep(
    run: RunSpec, store: ResultStore, points: list[SweepPoint], level: float, progress: Progress = Silent()
) -> tuple[pd.DataFrame, int]:
    """(the grid's table, how many validation images it was measured on) for ``run``'s suite,
    built by ``sweep_suite``."""
    from bench.executors import SerialExecutor
    from bench.report.collect import collect

    summary = run_suite(run, store, SerialExecutor(run, progress=progress))
    data = collect(run.suite, store, summary.cells)
    return sweep_table(data.results, run.suite, points, level), int(data.results["n_images"].max())


def write_sweep(
    table: pd.DataFrame, card: ModelCard, seeds: tuple[int, ...], level: float, images: int, reports: Path
) -> Path:
    """``images``: how many validation images the rule was measured on."""
    """reports/sweeps/MODEL/: sweep.csv (the grid) and sweep.md (the rule, the grid, the choice)."""
    from bench.io import atomic_write_text

    dest = Path(reports) / "sweeps" / card.name
    chosen = choose(table)
    shown = table.assign(
        **{c: table[c].map(lambda v: f"{v * 100:.1f}") for c in ("clean", "robust")},
        **{c: table[c].map(lambda v: "" if v != v else f"{v * 100:.1f}") for c in ("clean sem", "robust sem")},
        **{c: table[c].map(lambda v: f"{v:.3f}") for c in ("clean ratio", "robust ratio")},
    )
    lines = [
        f"# Alpha sweep: `{card.name}`",
        "",
        f"Rule (Attias et al. 2024): regularized/baseline clean accuracy >= {CLEAN_RATIO} (healthy) and robust "
        f"accuracy ratio > 1 under Gaussian noise {level:g} (per-image clamp, common noise for every model), means "
        f"over training seeds {list(seeds)} on {images} validation images of `{card.dataset}` (held out from "
        "training, never the test images a suite reports on). Baseline: the same card "
        "without its regularizer. Accuracies in %, ± SEM over seeds.",
        "",
        shown.to_markdown(index=False),
        "",
        f"Chosen: **{chosen['model']}**" if chosen is not None else "Chosen: **none** (no grid point passes the rule)",
        "",
    ]
    atomic_write_text(dest / "sweep.md", "\n".join(lines))
    atomic_write_text(dest / "sweep.csv", table.to_csv(index=False))
    return dest
