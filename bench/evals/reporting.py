"""How an evaluation's numbers are reported, declared by the evaluation itself: the report code
iterates over these declarations and never recognises an evaluation by its name.

- ``Curve``: accuracy against a parameter (noise level, epsilon, severity), one 'accuracy' number
  and per-image correctness per point. Every curve gets per-point paired tests (McNemar and a
  bootstrap) and a per-image AUC; a headline curve is also an AUC column of the main table.
- ``Summary``: one number per model seed (clean accuracy, a median perturbation, a mean
  accuracy), a main-table column with its paired test.
- ``DetailTable``: an evaluation's own table (the attack ensemble per attack, corruptions per
  corruption), a pure function of its rows."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class MetricId:
    """What a number measures: a metric name, and for a transfer attack the model it came from."""

    name: str  # e.g. 'noise-gaussian', 'pgd-linf', 'transfer-linf', 'minimal-l2'
    source: str = ""

    @property
    def label(self) -> str:
        """The flat name used in results.csv and references ('transfer-linf:quick-none')."""
        return f"{self.name}:{self.source}" if self.source else self.name


@dataclass(frozen=True)
class Curve:
    metric: MetricId
    axis: str  # the x-axis label of its plot panel
    plot: str  # figure file stem; curves naming the same figure share it (a panel each, or pooled)
    title: str  # the figure's title
    headline: bool = False  # an AUC column in the main table and the paired-comparisons table
    monotone: bool = True  # robust accuracy must not rise with the parameter (sanity flag)
    pooled: bool = False  # drawn as the mean over the figure's curves, one line per model
    whitebox: MetricId | None = None  # a black-box curve: flag it where it beats this white-box curve
    # RobustBench model-info fields its largest positive parameter fills: 'eps' (that parameter)
    # and an accuracy field there ('autoattack_acc'); a curve filling an accuracy field sets eps first
    robustbench: tuple[str, ...] = ()


@dataclass(frozen=True)
class Summary:
    column: str  # main-table column, e.g. 'clean', 'minimal-l2 median', 'corruptions mean'
    metric: MetricId
    statistic: str  # the stored number per model seed ('accuracy', 'median', 'mean accuracy')
    examples: str  # the per-image values its paired test resamples ('accuracy', 'distance', ...)
    # the paired comparison, one statistic per training seed: accuracy (the difference, and a
    # McNemar test per seed on per-image correctness), mean difference, median shift, or the log
    # ratio of medians (shown as a % change); 'none': not compared
    test: Literal["mcnemar", "median-shift", "mean-difference", "log-ratio", "none"]
    percent: bool = True
    higher_is_better: bool = True
    ranked: bool = True  # in the probability-of-being-best table (a measurement that is not a merit is not)
    distribution_plot: str = ""  # figure file stem for the ECDF of the per-image values
    robustbench: str = ""  # a RobustBench model-info field it fills ('clean_acc')
    # a similarity to a named target shared by all models: the x axis of a similarity vs robustness view
    target_similarity: bool = False
    note: str = ""  # what the column means, listed under the table


# a summary's test -> the name of its contrast (deltas.csv 'summary'; an endpoint's 'summary')
CONTRAST_NAMES = {
    "mcnemar": "accuracy",
    "mean-difference": "mean difference",
    "median-shift": "median shift",
    "log-ratio": "log ratio of medians",
}


@dataclass(frozen=True)
class DetailTable:
    title: str
    note: str
    build: Callable[[pd.DataFrame, list[str]], pd.DataFrame]  # (this evaluation's result rows, models) -> table
    with_clean: bool = False  # its rows include the clean accuracy rows (a table relative to clean error)


@dataclass(frozen=True)
class ReportSpec:
    curves: tuple[Curve, ...] = ()
    summaries: tuple[Summary, ...] = ()
    tables: tuple[DetailTable, ...] = ()

    def metrics(self) -> set[MetricId]:
        return {c.metric for c in self.curves} | {s.metric for s in self.summaries}

    def contrasts(self) -> dict[str, set[str]]:
        """metric label -> the contrasts its numbers offer ('accuracy' of a curve needs a grid point)."""
        out: dict[str, set[str]] = {}
        for s in self.summaries:
            if s.test != "none":
                out.setdefault(s.metric.label, set()).add(CONTRAST_NAMES[s.test])
        for c in self.curves:
            out.setdefault(c.metric.label, set()).update({"AUC", "accuracy"})
        return out
