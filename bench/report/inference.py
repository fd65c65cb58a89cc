"""Paired contrasts between training procedures, primary endpoints and multiplicity: pure
functions from collected results (the long results table, and per-image outcomes where a
bootstrap asks for them) to the numbers a report states.

Every contrast is one paired statistic per training seed (the difference of the two models'
accuracies, AUCs, or the log ratio of their median minimal perturbations on that seed's runs),
so the default interval and every p-value need only the per-seed numbers of results.csv; the
bootstrap options resample per-image outcomes. A suite card's ``[[endpoints]]`` are its primary
questions, tested first and Holm-adjusted among themselves; every other contrast is exploratory,
with Holm-adjusted p-values within its table."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bench.evals.reporting import CONTRAST_NAMES, MetricId, ReportSpec
from bench.stats import (
    LOG_MEDIAN_RATIO,
    MEAN_DIFFERENCE,
    MEDIAN_SHIFT,
    MIN_SEEDS,
    Interval,
    PairedStatistic,
    curve_auc,
    holm,
    mcnemar,
    mean_sem,
    minimal_detectable_effect,
    paired_interval,
    per_image_auc,
    seed_t_interval,
    sign_flip_p,
    t_p_value,
)

# the Holm families of the comparisons tables: robustness and accuracy (the merits), and what the
# regularizer did (measurements that are not merits, such as similarity to a target)
TABLE = "comparisons table"
CHECKS = "regularizer checks"
# a summary's declared test -> its paired statistic
SUMMARY_STATISTICS = {
    "mcnemar": MEAN_DIFFERENCE,
    "mean-difference": MEAN_DIFFERENCE,
    "median-shift": MEDIAN_SHIFT,
    "log-ratio": LOG_MEDIAN_RATIO,
}


@dataclass(frozen=True)
class ContrastKind:
    """What one contrast compares: a metric's summary, a curve's AUC, or one grid point."""

    metric: MetricId
    param: float | None
    summary: str  # 'AUC', or a CONTRAST_NAMES value
    statistic: PairedStatistic
    values: str  # the stored number per seed ('accuracy', 'median', ...; 'AUC': computed from the curve)
    examples: str  # the per-image values a bootstrap resamples ('' where there are none)
    column: str  # its column in the comparisons table; '' for grid points
    percent: bool
    family: str  # the Holm family of exploratory contrasts it belongs to


def auc_column(curve) -> str:
    return f"{curve.metric.label} AUC"


def curve_points(e: pd.DataFrame) -> pd.DataFrame:
    """The accuracy points of one curve (not its sanity probe), by parameter."""
    return e[(e["statistic"] == "accuracy") & (e["attack"] == "")].sort_values("param")


def rows_of(df: pd.DataFrame, metric: MetricId) -> pd.DataFrame:
    return df[(df["metric"] == metric.name) & (df["source"] == metric.source)]


def summary_kinds(spec: ReportSpec) -> list[ContrastKind]:
    out = []
    for s in spec.summaries:
        if s.test != "none":
            stat, name = SUMMARY_STATISTICS[s.test], CONTRAST_NAMES[s.test]
            family = TABLE if s.ranked else CHECKS
            out.append(ContrastKind(s.metric, None, name, stat, s.statistic, s.examples, s.column, s.percent, family))
    return out


def auc_kind(curve) -> ContrastKind:
    column = auc_column(curve) if curve.headline else ""
    family = TABLE if column else f"{curve.metric.label} grid"
    return ContrastKind(curve.metric, None, "AUC", MEAN_DIFFERENCE, "AUC", "accuracy", column, True, family)


def shown_kinds(specs: list[ReportSpec]) -> dict[tuple[str, str], ContrastKind]:
    """(evaluation label, summary) -> the contrasts a comparisons table shows: summaries and
    headline AUCs."""
    kinds = [k for spec in specs for k in summary_kinds(spec)]
    kinds += [auc_kind(c) for spec in specs for c in spec.curves if c.headline]
    return {(k.metric.label, k.summary): k for k in kinds}


def contrast_kinds(specs: list[ReportSpec], results: pd.DataFrame) -> list[ContrastKind]:
    """In report order: each evaluation's compared summaries, then each curve's AUC and points
    (the points present in the results)."""
    kinds = []
    for spec in specs:
        kinds += summary_kinds(spec)
        for c in spec.curves:
            points = sorted(set(curve_points(rows_of(results, c.metric))["param"].dropna()))
            if points:
                grid = f"{c.metric.label} grid"
                kinds.append(auc_kind(c))
                kinds += [
                    ContrastKind(c.metric, p, "accuracy", MEAN_DIFFERENCE, "accuracy", "accuracy", "", True, grid)
                    for p in points
                ]
    return kinds


def seed_values(results: pd.DataFrame, model: str, seeds: list[int], kind: ContrastKind) -> np.ndarray | None:
    """The model's number per seed for a contrast (None where a seed lacks it)."""
    mine = rows_of(results[results["model"] == model], kind.metric)
    out = []
    for s in seeds:
        d = mine[mine["seed"] == s]
        if kind.values == "AUC":
            points = curve_points(d)
            value = curve_auc(points["param"], points["value"]) if len(points) else None
        else:
            e = d[(d["statistic"] == kind.values) & (d["attack"] == "")]
            e = e[e["param"].isna()] if kind.param is None else e[np.isclose(e["param"], kind.param)]
            value = float(e["value"].iloc[0]) if len(e) else None
        if value is None:
            return None
        out.append(value)
    return np.asarray(out, float)


def seed_differences(a: np.ndarray, b: np.ndarray, statistic: PairedStatistic) -> np.ndarray:
    """The paired statistic per seed from the two models' per-seed numbers."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(a) - np.log(b) if statistic.log_scale else a - b


def image_values(
    examples: dict, results: pd.DataFrame, model: str, seeds: list[int], kind: ContrastKind
) -> np.ndarray | None:
    """(seeds, images) per-image values a bootstrap resamples (per-image AUC for an AUC)."""
    if not kind.examples:
        return None
    if kind.summary == "AUC":
        params = sorted(set(curve_points(rows_of(results[results["model"] == model], kind.metric))["param"].dropna()))
        stacks = [_stack(examples, model, seeds, kind.metric, p, kind.examples) for p in params]
        if not stacks or any(s is None for s in stacks) or len({s.shape for s in stacks}) != 1:
            return None
        return per_image_auc(params, np.stack(stacks, axis=1))
    return _stack(examples, model, seeds, kind.metric, kind.param, kind.examples)


def _stack(examples: dict, model: str, seeds: list[int], metric: MetricId, param, statistic: str) -> np.ndarray | None:
    arrays = [_example(examples, model, s, metric, param, statistic) for s in seeds]
    if any(a is None for a in arrays) or len({len(a) for a in arrays}) != 1:
        return None
    return np.stack(arrays)


def _example(examples: dict, model: str, seed: int, metric: MetricId, param, statistic: str) -> np.ndarray | None:
    if param is None:
        return examples.get((model, seed, metric, None, statistic, ""))
    for (m, s, met, p, st, att), values in examples.items():  # params read back from files may be rounded
        if m == model and s == seed and met == metric and st == statistic and not att and p is not None:
            if math.isclose(p, param, rel_tol=1e-9, abs_tol=1e-12):
                return values
    return None


# --------------------------------------------------------------------------- the contrasts
@dataclass(frozen=True)
class Inference:
    """How a report's intervals are made (the suite card's [compare] table)."""

    method: str = "t"  # bench.stats.INTERVALS
    level: float = 0.95
    n_boot: int = 2000
    seed: int = 0
    alpha: float = 0.05  # of the exploratory tests and the minimal detectable effect
    power: float = 0.8


DELTA_COLUMNS = [
    "model",
    "reference",
    "evaluation",
    "param",
    "summary",
    "role",
    "scope",
    "seed",
    "delta",
    "ci_low",
    "ci_high",
    "method",
    "df",
    "p_value",
    "p_t",
    "p_holm",
    "family",
    "sd_seed",
    "mde",
    "nan_resamples",
    "reason",
    "mcnemar_p",
    "model_only",
    "reference_only",
    "seeds",
    "images",
]


def contrast_interval(
    d: np.ndarray, a_img: np.ndarray | None, b_img: np.ndarray | None, kind: ContrastKind, how: Inference
) -> Interval:
    """The interval of one contrast by the chosen method; p-values are always the sign-flip test
    of the per-seed statistic (the training seed is the unit of replication)."""
    t = seed_t_interval(d, how.level)
    if kind.statistic.log_scale and not np.isfinite(d).all():
        t = dataclasses.replace(
            t,
            reason=f"a median of 0 or inf on {int((~np.isfinite(d)).sum())} of {len(d)} seeds (half the images "
            "misclassified clean, or not fooled): no ratio",
        )
    if how.method == "t":
        return t
    if a_img is None or b_img is None or a_img.shape != b_img.shape:
        return Interval(
            t.estimate,
            math.nan,
            math.nan,
            how.method,
            n=len(d),
            p_value=t.p_value,
            p_t=t.p_t,
            sd=t.sd,
            reason="no per-image outcomes for a bootstrap",
        )
    boot = paired_interval(how.method, kind.statistic, a_img, b_img, how.n_boot, how.seed, how.level)
    return Interval(
        boot.estimate,
        boot.low,
        boot.high,
        boot.method,
        n=boot.n,
        p_value=t.p_value,
        p_t=t.p_t,
        sd=t.sd,
        nan_resamples=boot.nan_resamples,
        resamples=boot.resamples,
        level=boot.level,
        reason=boot.reason,
    )


def _row(model, ref, kind: ContrastKind, ci: Interval, images: int | None, how: Inference) -> dict:
    return {
        "model": model,
        "reference": ref,
        "evaluation": kind.metric.label,
        "param": kind.param,
        "summary": kind.summary,
        "role": "exploratory",
        "scope": "training procedure",
        "seed": None,
        "delta": ci.estimate,
        "ci_low": ci.low,
        "ci_high": ci.high,
        "method": ci.label,
        "df": ci.df if ci.method == "t" else math.nan,
        "p_value": ci.p_value,
        "p_t": ci.p_t,
        "p_holm": math.nan,
        "family": kind.family,
        "sd_seed": ci.sd,
        "mde": minimal_detectable_effect(ci.sd, ci.n, how.alpha, how.power) if ci.n >= MIN_SEEDS else math.nan,
        "nan_resamples": ci.nan_resamples,
        "reason": ci.reason,
        "mcnemar_p": math.nan,
        "model_only": None,
        "reference_only": None,
        "seeds": ci.n,
        "images": images,
    }


def _mcnemar_rows(model, ref, kind: ContrastKind, seeds: list[int], a: np.ndarray, b: np.ndarray) -> list[dict]:
    """McNemar per training seed: those two sets of weights on the same images, nothing more."""
    rows = []
    for k, s in enumerate(seeds):
        t = mcnemar(a[k], b[k])
        rows.append(
            {
                **{c: None for c in DELTA_COLUMNS},
                "model": model,
                "reference": ref,
                "evaluation": kind.metric.label,
                "param": kind.param,
                "summary": "accuracy",
                "role": "exploratory",
                "scope": "these weights",
                "seed": s,
                "delta": float((a[k] - b[k]).mean()),
                "mcnemar_p": t.p_value,
                "model_only": t.a_only,
                "reference_only": t.b_only,
                "seeds": 1,
                "images": a.shape[1],
            }
        )
    return rows


def common_seeds(results: pd.DataFrame, model: str, ref: str) -> list[int]:
    return sorted(set(results[results["model"] == model]["seed"]) & set(results[results["model"] == ref]["seed"]))


def paired_deltas(
    results: pd.DataFrame,
    examples: dict,
    pairs: list[tuple[str, str]],
    specs: list[ReportSpec],
    how: Inference = Inference(),
    primary: set[tuple] = frozenset(),
) -> pd.DataFrame:
    """Every contrast model - reference on the seeds both have: per summary, per curve (AUC) and
    per grid point a training-procedure effect with its interval and sign-flip p-value, Holm-
    adjusted within its family; per accuracy point also a McNemar test per seed. ``primary``:
    (model, reference, evaluation, param, summary) of the card's endpoints, outside the families."""
    kinds = contrast_kinds(specs, results)
    rows = []
    own = dict(tuple(results.groupby("model", sort=False)))  # each model's rows, filtered once
    memo: dict[tuple, np.ndarray | None] = {}  # a model's numbers serve every pair it is in

    def values(fn, data, name, seeds, kind):
        key = (fn, name, tuple(seeds), kind)
        if key not in memo:
            memo[key] = fn(*data, name, seeds, kind)
        return memo[key]

    for model, ref in pairs:
        seeds = common_seeds(results, model, ref)
        if not seeds:
            continue
        mine, theirs = own[model], own[ref]
        for kind in kinds:
            a, b = values(seed_values, (mine,), model, seeds, kind), values(seed_values, (theirs,), ref, seeds, kind)
            if a is None or b is None:
                continue
            a_img = values(image_values, (examples, mine), model, seeds, kind)
            b_img = values(image_values, (examples, theirs), ref, seeds, kind)
            ci = contrast_interval(seed_differences(a, b, kind.statistic), a_img, b_img, kind, how)
            row = _row(model, ref, kind, ci, None if a_img is None else a_img.shape[1], how)
            if (model, ref, kind.metric.label, kind.param, kind.summary) in primary:
                row["role"], row["family"] = "primary", "endpoints"
            rows.append(row)
            if kind.summary == "accuracy" and a_img is not None and b_img is not None and a_img.shape == b_img.shape:
                rows += _mcnemar_rows(model, ref, kind, seeds, a_img, b_img)
    deltas = pd.DataFrame(rows, columns=DELTA_COLUMNS)
    effects = deltas[(deltas["scope"] == "training procedure") & (deltas["role"] == "exploratory")]
    tables = effects["family"].isin([TABLE, CHECKS])
    for _, g in effects[tables].groupby("family", sort=False):  # one family per shown table
        deltas.loc[g.index, "p_holm"] = holm(g["p_value"].astype(float))
    for _, g in effects[~tables].groupby(["family", "model", "reference"], sort=False):
        deltas.loc[g.index, "p_holm"] = holm(g["p_value"].astype(float))  # a curve's points, per pair
    return deltas


# --------------------------------------------------------------------------- display
def _scaled(kind_percent: bool, log_scale: bool, value: float) -> str:
    if not math.isfinite(value):
        return "n/a" if math.isnan(value) else ("+inf" if value > 0 else "-inf")
    if log_scale:
        return f"{(math.exp(value) - 1) * 100:+.1f}"
    return f"{value * 100:+.1f}" if kind_percent else f"{value:+.3g}"


def effect_text(delta: float, low: float, high: float, percent: bool, log_scale: bool) -> tuple[str, str]:
    """('+5.0', '[-0.4, +10.4]') in the contrast's display unit (pp, raw, or % change)."""
    est = _scaled(percent, log_scale, delta)
    if math.isnan(low) or math.isnan(high):
        return est, "n/a"
    return est, f"[{_scaled(percent, log_scale, low)}, {_scaled(percent, log_scale, high)}]"


def p_text(p: float) -> str:
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "n/a"
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def unit(percent: bool, log_scale: bool) -> str:
    return "%" if log_scale else ("pp" if percent else "")


def comparison_table(deltas: pd.DataFrame, specs: list[ReportSpec]) -> pd.DataFrame:
    """The comparisons shown in a report (summaries and headline AUCs), one row each: Δ, its
    interval and method, the sign-flip p, the Holm-adjusted p within the table, and the minimal
    detectable effect at 80 % power from the per-seed SD."""
    if deltas.empty:
        return pd.DataFrame()
    shown = shown_kinds(specs)
    rows = []
    effects = deltas[(deltas["scope"] == "training procedure") & deltas["param"].isna()]
    for _, r in effects.iterrows():
        kind = shown.get((r["evaluation"], r["summary"]))
        if kind is None or not kind.column:
            continue
        log = kind.statistic.log_scale
        est, ci = effect_text(r["delta"], r["ci_low"], r["ci_high"], kind.percent, log)
        u = unit(kind.percent, log)
        mde = r["mde"]
        rows.append(
            {
                "family": kind.family,
                "model": r["model"],
                "vs": r["reference"],
                "column": kind.column,
                "role": r["role"],
                "seeds": int(r["seeds"]),
                "Δ": est if est == "n/a" else f"{est} {u}".strip(),
                "CI": ci if ci == "n/a" else f"{ci} ({r['method']})",
                "p": p_text(r["p_value"]),
                "p Holm": p_text(r["p_holm"]) if r["role"] == "exploratory" else "(primary)",
                "MDE 80%": "n/a"
                if mde is None or math.isnan(mde)
                else f"{_scaled(kind.percent, log, mde).lstrip('+')} {u}".strip(),
                "note": r["reason"] or "",
            }
        )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- endpoints
@dataclass(frozen=True)
class EndpointResult:
    name: str
    model: str
    reference: str
    what: str  # 'noise-gaussian accuracy at 0.5'
    verdict: str  # 'met' | 'not met' | 'inconclusive'
    reason: str
    interval: Interval
    p: float  # the endpoint's test, in its stated direction and sides
    p_adjusted: float  # Holm over the card's endpoints
    mde: float
    percent: bool
    log_scale: bool
    alpha: float
    seeds: int
    interpretation: str = ""

    def line(self, text: Callable[[str], str] = str, strong: str = "**") -> str:
        """One line per endpoint; ``text`` escapes the card's own words (its name, what each
        verdict means) for the output format, ``strong`` marks the verdict."""
        est, ci = effect_text(
            self.interval.estimate, self.interval.low, self.interval.high, self.percent, self.log_scale
        )
        u = unit(self.percent, self.log_scale)
        mde = "n/a" if math.isnan(self.mde) else f"{_scaled(self.percent, self.log_scale, self.mde).lstrip('+')} {u}"
        level = f"{self.interval.level * 100:g}%"
        adjusted = (
            ""
            if self.p_adjusted == self.p or math.isnan(self.p_adjusted)
            else f", p on the claimed side after Holm {p_text(self.p_adjusted)}"
        )
        meaning = f" ({text(self.interpretation)})" if self.interpretation else ""
        return (
            f"{text(self.name)}: {self.model} vs {self.reference}, {self.what}: {est} {u} {level} CI {ci} "
            f"({self.interval.label}), p = {p_text(self.p)}{adjusted}, {self.seeds} seeds, MDE 80% {mde}: "
            f"{strong}{self.verdict}{strong}{meaning} ({self.reason})"
        )


def endpoint_kind(endpoint, specs: list[ReportSpec], results: pd.DataFrame) -> ContrastKind | None:
    for k in contrast_kinds(specs, results):
        if k.metric.label == endpoint.evaluation and k.summary == endpoint.summary:
            if (k.param is None) == (endpoint.param is None) and (
                k.param is None or math.isclose(k.param, endpoint.param, abs_tol=1e-12)
            ):
                return k
    return None


def _test_p(d: np.ndarray, test: str, alternative: str) -> float:
    if test == "sign-flip":
        return sign_flip_p(d, alternative)
    sd = float(d.std(ddof=1)) if len(d) > 1 else math.nan
    return t_p_value(float(d.mean()), sd, len(d), alternative)


def evaluate_endpoints(endpoints, results: pd.DataFrame, specs: list[ReportSpec]) -> list[EndpointResult]:
    """Each endpoint's contrast from the per-seed numbers, its test in the stated direction,
    Holm over the endpoints, and the verdict its interval implies:

    - met: the effect lies on the claimed side (adjusted p < alpha; for one endpoint, the
      interval excludes 0 on that side) and any health condition holds;
    - not met: the interval lies on the other side of 0, or within +-margin (equivalence by two
      one-sided tests), or a health condition fails;
    - inconclusive: otherwise ('borderline' when the adjusted p is below 2 alpha)."""
    prepared = []
    for e in endpoints:
        kind = endpoint_kind(e, specs, results)
        seeds = common_seeds(results, e.model, e.reference)
        a = seed_values(results, e.model, seeds, kind) if kind else None
        b = seed_values(results, e.reference, seeds, kind) if kind else None
        if kind is None or a is None or b is None:
            prepared.append((e, kind, None, math.nan, math.nan, math.nan))
            continue
        d = seed_differences(a, b, kind.statistic)
        alternative = e.direction if e.sides == 1 else "two-sided"
        p = _test_p(d, e.test, alternative) if np.isfinite(d).all() else math.nan
        if e.sides == 2 and math.isfinite(p) and np.sign(d.mean()) != (1 if e.direction == "greater" else -1):
            p_claim = 1.0  # significant or not, the effect is not on the claimed side
        else:
            p_claim = p
        p_equiv = math.nan
        if e.margin is not None and np.isfinite(d).all() and len(d) > 1:
            lower = _test_p(d + e.margin, e.test, "greater")
            upper = _test_p(d - e.margin, e.test, "less")
            p_equiv = max(lower, upper)
        prepared.append((e, kind, d, p, p_claim, p_equiv))
    adjusted = holm([p for *_, p, _ in prepared])
    adjusted_equiv = holm([q for *_, q in prepared])
    out = []
    for (e, kind, d, p, _, _), p_adj, q_adj in zip(prepared, adjusted, adjusted_equiv):
        name = e.name or "primary endpoint"
        what = f"{e.evaluation} {e.summary}" + (f" at {e.param:g}" if e.param is not None else "")
        if d is None:
            out.append(
                EndpointResult(
                    name,
                    e.model,
                    e.reference,
                    what,
                    "inconclusive",
                    "no numbers for it in these results",
                    Interval(math.nan, math.nan, math.nan, "t"),
                    math.nan,
                    math.nan,
                    math.nan,
                    True,
                    False,
                    e.alpha,
                    0,
                )
            )
            continue
        level = 1 - e.alpha * (2 if e.sides == 1 else 1)
        ci = seed_t_interval(d, level)
        mde = minimal_detectable_effect(ci.sd, len(d), e.alpha * (2 if e.sides == 1 else 1))
        claimed = 1 if e.direction == "greater" else -1
        health = _health(e, results, kind)
        if health:
            verdict, reason = "not met", health
        elif math.isfinite(p_adj) and p_adj < e.alpha:
            verdict, reason = (
                "met",
                f"adjusted p {p_text(p_adj)} < alpha {e.alpha:g} on the claimed side ({e.direction})",
            )
        elif math.isfinite(q_adj) and q_adj < e.alpha:
            verdict, reason = (
                "not met",
                f"equivalent: the effect lies within ±{_scaled(kind.percent, kind.statistic.log_scale, e.margin).lstrip('+')} (TOST p {p_text(q_adj)})",
            )
        elif math.isfinite(ci.low) and (ci.high < 0 if claimed > 0 else ci.low > 0):
            verdict, reason = "not met", "the interval lies on the other side of 0"
        else:
            verdict = "inconclusive"
            reason = (
                f"borderline: adjusted p {p_text(p_adj)} between alpha {e.alpha:g} and {2 * e.alpha:g}"
                if math.isfinite(p_adj) and p_adj < 2 * e.alpha
                else "the interval includes 0"
                + (" and effects beyond the margin" if e.margin is not None else "")
                + (f" ({ci.reason})" if ci.reason else "")
            )
        out.append(
            EndpointResult(
                name,
                e.model,
                e.reference,
                what,
                verdict,
                reason,
                ci,
                p,
                p_adj,
                mde,
                kind.percent,
                kind.statistic.log_scale,
                e.alpha,
                len(d),
                e.says.get(verdict, "") if e.says else "",
            )
        )
    return out


def _health(endpoint, results: pd.DataFrame, kind: ContrastKind) -> str:
    """The follow-up's health rule, where the endpoint states it: the model's mean clean accuracy
    at least ``min_clean_ratio`` of the reference's. '' when it holds (or is not stated)."""
    if endpoint.min_clean_ratio is None:
        return ""
    clean = results[(results["metric"] == "clean") & (results["statistic"] == "accuracy") & results["param"].isna()]
    a = mean_sem(clean[clean["model"] == endpoint.model]["value"])[0]
    b = mean_sem(clean[clean["model"] == endpoint.reference]["value"])[0]
    ratio = a / b if b else math.nan
    if not ratio >= endpoint.min_clean_ratio:
        return f"clean-accuracy ratio {ratio:.3f} < {endpoint.min_clean_ratio:g} (not healthy)"
    return ""
