"""Pure functions from collected results to the numbers a leaderboard shows: per-seed summaries
(AUC, medians), mean ± SEM over seeds, ranks, paired deltas with bootstrap CIs and McNemar
tests, and sanity flags. No I/O here, and no evaluation is known by name: every table is built
from the evaluations' own declarations (``ReportSpec``)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bench.evals.reporting import Curve, MetricId, ReportSpec, Summary
from bench.stats import (
    curve_auc,
    hierarchical_bootstrap,
    mcnemar,
    mean_difference,
    mean_sem,
    median_shift,
    per_image_auc,
    ranks,
)

MASKING_MARGIN = 0.02  # a black-box curve beating its white-box curve by more than this: gradient masking sign
TESTS = {"median-shift": ("median shift", median_shift), "mean-difference": ("mean accuracy", mean_difference)}


@dataclass(frozen=True)
class Column:
    """A main-table column: one number per model seed."""

    name: str
    percent: bool
    higher_is_better: bool
    ranked: bool = True


def curves(specs: list[ReportSpec]) -> list[Curve]:
    return [c for s in specs for c in s.curves]


def summaries(specs: list[ReportSpec]) -> list[Summary]:
    return [x for s in specs for x in s.summaries]


def auc_column(curve: Curve) -> str:
    return f"{curve.metric.label} AUC"


def columns(specs: list[ReportSpec]) -> list[Column]:
    """In the suite's evaluation order: each evaluation's summaries, then its headline curves."""
    out = []
    for spec in specs:
        out += [Column(s.column, s.percent, s.higher_is_better, s.ranked) for s in spec.summaries]
        out += [Column(auc_column(c), True, True) for c in spec.curves if c.headline]
    return out


def rows_of(df: pd.DataFrame, metric: MetricId) -> pd.DataFrame:
    return df[(df["metric"] == metric.name) & (df["source"] == metric.source)]


def curve_points(e: pd.DataFrame) -> pd.DataFrame:
    """The accuracy points of one curve (not its sanity probe), by parameter."""
    return e[(e["statistic"] == "accuracy") & (e["attack"] == "")].sort_values("param")


def seed_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Mean, SEM and number of seeds per model, metric, parameter, statistic and attack."""
    rows = []
    keys = ["model", "regularizer", "metric", "source", "param", "statistic", "attack"]
    for values, g in df.groupby(keys, dropna=False, sort=False):
        m, s, n = mean_sem(g["value"])
        rows.append({**dict(zip(keys, values)), "mean": m, "sem": s, "n": n})
    return pd.DataFrame(rows, columns=[*keys, "mean", "sem", "n"])


def headline_per_seed(df: pd.DataFrame, specs: list[ReportSpec]) -> pd.DataFrame:
    """One number per (model, seed, column): each summary's stored statistic and the normalised
    AUC of each headline curve over its grid."""
    rows = []
    for (model, reg, seed), d in df.groupby(["model", "regularizer", "seed"], sort=False):
        for spec in specs:
            for s in spec.summaries:
                e = rows_of(d, s.metric)
                e = e[(e["statistic"] == s.statistic) & (e["attack"] == "") & e["param"].isna()]
                if len(e):
                    rows.append((model, reg, seed, s.column, e["value"].iloc[0]))
            for c in spec.curves:
                e = curve_points(rows_of(d, c.metric))
                if c.headline and len(e):
                    rows.append((model, reg, seed, auc_column(c), curve_auc(e["param"], e["value"])))
    return pd.DataFrame(rows, columns=["model", "regularizer", "seed", "column", "value"])


def _fmt(mean: float, sem: float, n: int, percent: bool) -> str:
    if math.isnan(mean):
        return "n/a"
    if percent:
        text = f"{mean * 100:.1f}" + (f" ± {sem * 100:.1f}" if n > 1 and not math.isnan(sem) else "")
    else:
        text = (f"{mean:.4g}" if math.isfinite(mean) else "inf") + (
            f" ± {sem:.2g}" if n > 1 and not math.isnan(sem) else ""
        )
    return text


def main_table(df: pd.DataFrame, models: list[str], specs: list[ReportSpec]) -> pd.DataFrame:
    """One row per model (seeds aggregated): mean ± SEM of each column with its rank in
    parentheses (1 = best in the column's direction), and the mean rank."""
    per_seed = headline_per_seed(df, specs)
    if per_seed.empty:
        return pd.DataFrame()
    present_columns = set(per_seed["column"])
    cols = [c for c in columns(specs) if c.name in present_columns]
    stats = {(m, c): mean_sem(g["value"]) for (m, c), g in per_seed.groupby(["model", "column"], sort=False)}
    present = [m for m in models if m in set(per_seed["model"])]
    ranked = [c for c in cols if c.ranked]
    rank_of = {
        c.name: dict(zip(present, ranks([stats.get((m, c.name), (math.nan,))[0] for m in present], c.higher_is_better)))
        for c in ranked
    }
    rows = []
    for m in present:
        mine = per_seed[per_seed["model"] == m]
        row = {"model": m, "regularizer": mine["regularizer"].iloc[0], "seeds": int(mine["seed"].nunique())}
        for c in cols:
            mean, sem, n = stats.get((m, c.name), (math.nan, math.nan, 0))
            rank = f" ({rank_of[c.name][m]})" if c.ranked else ""
            row[c.name + (" %" if c.percent else "")] = _fmt(mean, sem, n, c.percent) + rank
        row["mean rank"] = f"{np.mean([rank_of[c.name][m] for c in ranked]):.1f}" if ranked else "-"
        rows.append(row)
    return pd.DataFrame(rows)


def comparison_pairs(
    labels: dict[str, str], baseline: str | None = None, control: str | None = None
) -> list[tuple[str, str]]:
    """(model, reference) pairs: every model against the baseline ('none') and against the
    control ('shuffle'), and the control against the baseline."""
    models = list(labels)
    baseline = baseline or next((m for m in models if labels[m] == "none"), None)
    control = control or next((m for m in models if labels[m] == "shuffle"), None)
    pairs = []
    for m in models:
        for ref in (baseline, control):
            if ref is not None and m != ref and not (m == baseline and ref == control) and (m, ref) not in pairs:
                pairs.append((m, ref))
    return pairs


def _stack(examples: dict, model: str, seeds: list[int], metric: MetricId, param, statistic: str) -> np.ndarray | None:
    arrays = [examples.get((model, s, metric, param, statistic, "")) for s in seeds]
    if any(a is None for a in arrays) or len({len(a) for a in arrays}) != 1:
        return None
    return np.stack(arrays)


DELTA_COLUMNS = [
    "model",
    "reference",
    "evaluation",
    "param",
    "summary",
    "scope",
    "seed",
    "delta",
    "ci_low",
    "ci_high",
    "mcnemar_p",
    "model_only",
    "reference_only",
    "seeds",
    "images",
]


def _effect(model, ref, metric: MetricId, param, summary, ci, seeds, images) -> dict:
    """A training effect: the model's training procedure against the reference's, over seeds and
    images (hierarchical bootstrap; no interval with fewer than three seeds)."""
    return {
        "model": model,
        "reference": ref,
        "evaluation": metric.label,
        "param": param,
        "summary": summary,
        "scope": "seeds and images",
        "seed": None,
        "delta": ci.estimate,
        "ci_low": ci.low,
        "ci_high": ci.high,
        "mcnemar_p": math.nan,
        "model_only": None,
        "reference_only": None,
        "seeds": len(seeds),
        "images": images,
    }


def _per_seed_mcnemar(model, ref, metric: MetricId, param, seeds, a: np.ndarray, b: np.ndarray) -> list[dict]:
    """McNemar per training seed: those two sets of weights on the same images, nothing more."""
    rows = []
    for k, s in enumerate(seeds):
        t = mcnemar(a[k], b[k])
        rows.append(
            {
                "model": model,
                "reference": ref,
                "evaluation": metric.label,
                "param": param,
                "summary": "accuracy",
                "scope": "these weights",
                "seed": s,
                "delta": float((a[k] - b[k]).mean()),
                "ci_low": math.nan,
                "ci_high": math.nan,
                "mcnemar_p": t.p_value,
                "model_only": t.a_only,
                "reference_only": t.b_only,
                "seeds": 1,
                "images": a.shape[1],
            }
        )
    return rows


def paired_deltas(
    df: pd.DataFrame,
    examples: dict,
    pairs: list[tuple[str, str]],
    specs: list[ReportSpec],
    n_boot: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Differences model - reference on the same images and training seeds: per accuracy point,
    per curve (AUC) and per summary (its declared test), each a training effect with its
    seed-and-image interval; per accuracy point also a McNemar test per seed (those weights)."""
    rows = []
    for model, ref in pairs:
        seeds = sorted(set(df[df["model"] == model]["seed"]) & set(df[df["model"] == ref]["seed"]))
        if not seeds:
            continue
        mine = df[df["model"] == model]
        for spec in specs:
            for s in spec.summaries:
                if s.test == "none":
                    continue
                a = _stack(examples, model, seeds, s.metric, None, s.examples)
                b = _stack(examples, ref, seeds, s.metric, None, s.examples)
                if a is None or b is None or a.shape != b.shape:
                    continue
                name, fn = ("accuracy", mean_difference) if s.test == "mcnemar" else TESTS[s.test]
                rows.append(
                    _effect(
                        model,
                        ref,
                        s.metric,
                        None,
                        name,
                        hierarchical_bootstrap(a, b, fn, n_boot, seed),
                        seeds,
                        a.shape[1],
                    )
                )
                if s.test == "mcnemar":
                    rows += _per_seed_mcnemar(model, ref, s.metric, None, seeds, a, b)
            for c in spec.curves:
                params = sorted(set(curve_points(rows_of(mine, c.metric))["param"].dropna()))
                stacks = [
                    (
                        p,
                        _stack(examples, model, seeds, c.metric, p, "accuracy"),
                        _stack(examples, ref, seeds, c.metric, p, "accuracy"),
                    )
                    for p in params
                ]
                if not stacks or any(a is None or b is None or a.shape != b.shape for _, a, b in stacks):
                    continue
                for p, a, b in stacks:
                    rows.append(
                        _effect(
                            model,
                            ref,
                            c.metric,
                            p,
                            "accuracy",
                            hierarchical_bootstrap(a, b, mean_difference, n_boot, seed),
                            seeds,
                            a.shape[1],
                        )
                    )
                    rows += _per_seed_mcnemar(model, ref, c.metric, p, seeds, a, b)
                a = per_image_auc(params, np.stack([s[1] for s in stacks], axis=1))
                b = per_image_auc(params, np.stack([s[2] for s in stacks], axis=1))
                rows.append(
                    _effect(
                        model,
                        ref,
                        c.metric,
                        None,
                        "AUC",
                        hierarchical_bootstrap(a, b, mean_difference, n_boot, seed),
                        seeds,
                        a.shape[1],
                    )
                )
    return pd.DataFrame(rows, columns=DELTA_COLUMNS)


def delta_table(deltas: pd.DataFrame, specs: list[ReportSpec]) -> pd.DataFrame:
    """The leaderboard's second table: one row per (model, reference), one column per summary
    and headline curve."""
    if deltas.empty:
        return pd.DataFrame()
    shown = []  # (evaluation label, summary kind, column, percent), in main-table order
    for spec in specs:
        for s in spec.summaries:
            if s.test != "none":
                kind = "accuracy" if s.test == "mcnemar" else TESTS[s.test][0]
                shown.append((s.metric.label, kind, f"Δ {s.column}" + (" (pp)" if s.percent else ""), s.percent))
        shown += [(c.metric.label, "AUC", f"Δ {auc_column(c)} (pp)", True) for c in spec.curves if c.headline]
    effects = deltas[deltas["scope"] == "seeds and images"]
    rows = []
    for (model, ref), d in effects.groupby(["model", "reference"], sort=False):
        row = {"model": model, "vs": ref, "seeds": int(d["seeds"].iloc[0])}
        for label, kind, column, percent in shown:
            r = d[(d["evaluation"] == label) & (d["summary"] == kind) & d["param"].isna()]
            if r.empty:
                continue
            r, scale, fmt = r.iloc[0], (100 if percent else 1), (".1f" if percent else ".3g")
            text = f"{r['delta'] * scale:+{fmt}}"
            if not math.isnan(r["ci_low"]):
                text += f" [{r['ci_low'] * scale:+{fmt}}, {r['ci_high'] * scale:+{fmt}}]"
            row[column] = text
        rows.append(row)
    return pd.DataFrame(rows)


def sanity_flags(df: pd.DataFrame, cells: pd.DataFrame, specs: list[ReportSpec]) -> list[str]:
    """The flags each evaluation stored beside its numbers, then the checks that need two cells:
    a black-box curve (transfer) must not beat its white-box curve (PGD of the same norm)."""
    flags = []
    for _, c in cells.iterrows():
        flags += [f"{c['model']} seed {c['seed']}: {f}" for f in json.loads(c.get("flags") or "[]")]
    checked = [c for c in curves(specs) if c.whitebox is not None]
    for (model, seed), d in df.groupby(["model", "seed"], sort=False):
        if d["value"].isna().any():
            nan = d[d["value"].isna()]
            flags.append(f"{model} seed {seed}: NaN values in {sorted(set(nan['metric']))}")
        for c in checked:
            black = curve_points(rows_of(d, c.metric)).set_index("param")["value"]
            white = curve_points(rows_of(d, c.whitebox)).set_index("param")["value"]
            for eps in sorted(set(black.index) & set(white.index)):
                if black[eps] < white[eps] - MASKING_MARGIN:
                    flags.append(
                        f"{model} seed {seed}: {c.metric.label} at {eps:g} ({black[eps]:.4f}) beats white-box "
                        f"{c.whitebox.label} ({white[eps]:.4f}) by more than {MASKING_MARGIN * 100:g} points: "
                        "suspect gradient masking"
                    )
    return flags


def detail_tables(df: pd.DataFrame, models: list[str], specs: list[ReportSpec]) -> list[tuple[str, str, pd.DataFrame]]:
    """(title, note, table) of each evaluation's own tables, built from its rows only."""
    out = []
    for spec in specs:
        keys = {(m.name, m.source) for m in spec.metrics()}
        mine = df[[(m, s) in keys for m, s in zip(df["metric"], df["source"])]]
        for t in spec.tables:
            table = t.build(mine, models)
            if len(table):
                out.append((t.title, t.note, table))
    return out
