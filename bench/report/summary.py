"""Pure functions from collected results to the numbers a leaderboard shows: per-seed summaries
(AUC, medians), mean ± SEM over seeds, each model's probability of being best, and sanity flags
(paired contrasts and endpoints: bench.report.inference). No I/O here, and no evaluation is
known by name: every table is built from the evaluations' own declarations (``ReportSpec``)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import pandas as pd

from bench.codestate import state_label
from bench.evals.reporting import Curve, MetricId, ReportSpec, Summary
from bench.report.inference import auc_column, curve_points, rows_of
from bench.stats import curve_auc, mean_sem, probability_best

MASKING_MARGIN = 0.02  # a black-box curve beating its white-box curve by more than this: gradient masking sign


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


def columns(specs: list[ReportSpec]) -> list[Column]:
    """In the suite's evaluation order: each evaluation's summaries, then its headline curves."""
    out = []
    for spec in specs:
        out += [Column(s.column, s.percent, s.higher_is_better, s.ranked) for s in spec.summaries]
        out += [Column(auc_column(c), True, True) for c in spec.curves if c.headline]
    return out


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
    """One row per model (seeds aggregated): mean ± SEM of each column. No ranks: an order of
    means says nothing of whether their errors overlap (``best_table`` does)."""
    per_seed = headline_per_seed(df, specs)
    if per_seed.empty:
        return pd.DataFrame()
    present_columns = set(per_seed["column"])
    cols = [c for c in columns(specs) if c.name in present_columns]
    stats = {(m, c): mean_sem(g["value"]) for (m, c), g in per_seed.groupby(["model", "column"], sort=False)}
    rows = []
    for m in [m for m in models if m in set(per_seed["model"])]:
        mine = per_seed[per_seed["model"] == m]
        row = {"model": m, "regularizer": mine["regularizer"].iloc[0], "seeds": int(mine["seed"].nunique())}
        for c in cols:
            mean, sem, n = stats.get((m, c.name), (math.nan, math.nan, 0))
            row[c.name + (" %" if c.percent else "")] = _fmt(mean, sem, n, c.percent)
        rows.append(row)
    return pd.DataFrame(rows)


def best_table(df: pd.DataFrame, models: list[str], specs: list[ReportSpec], n_boot: int = 2000) -> pd.DataFrame:
    """Per ranked column, each model's probability of being best over a seed bootstrap (the
    seeds all models share, drawn alike for every model: they are paired). Empty with fewer than
    two models or two shared seeds."""
    per_seed = headline_per_seed(df, specs)
    if per_seed.empty:
        return pd.DataFrame()
    present = [m for m in models if m in set(per_seed["model"])]
    shared = sorted(set.intersection(*[set(per_seed[per_seed["model"] == m]["seed"]) for m in present]))
    if len(present) < 2 or len(shared) < 2:
        return pd.DataFrame()
    table = {"model": present}
    for c in [c for c in columns(specs) if c.ranked and c.name in set(per_seed["column"])]:
        values = {}
        for m in present:
            v = per_seed[(per_seed["model"] == m) & (per_seed["column"] == c.name)].set_index("seed")["value"]
            values[m] = v.reindex(shared).to_numpy(float)
        p = probability_best(values, c.higher_is_better, n_boot)
        table[c.name] = [f"{p[m]:.2f}" if not math.isnan(p[m]) else "n/a" for m in present]
    return pd.DataFrame(table)


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


def consistency_flags(df: pd.DataFrame, examples: dict) -> list[str]:
    """Numbers no evaluation can produce (a stored cell edited by hand, a forged cell file):
    fractions outside [0, 1] or infinite; a curve's accuracy at grid point 0 (no perturbation)
    that differs from the clean accuracy on the same images; per-image outcomes whose count or
    mean disagree with their accuracy."""
    from bench.store.validate import is_fraction

    if df.empty:
        return []
    df = df.assign(label=[MetricId(m, s).label for m, s in zip(df["metric"], df["source"])])
    flags = []
    fractions = df[df["statistic"].map(is_fraction)]
    for _, r in fractions[~fractions["value"].between(0.0, 1.0) & ~fractions["value"].isna()].iterrows():
        where = r["label"] + ("" if pd.isna(r["param"]) else f" at {r['param']:g}")
        flags.append(f"{r['model']} seed {r['seed']}: {where} {r['statistic']} {r['value']!r} is outside [0, 1]")
    accuracy = df[(df["statistic"] == "accuracy") & (df["attack"] == "")]
    for (model, seed), d in accuracy.groupby(["model", "seed"], sort=False):
        clean = d[d["label"] == "clean"]
        outcomes = examples.get((model, seed, MetricId("clean"), None, "accuracy", ""))
        for _, r in d[(d["label"] != "clean") & (d["param"] == 0)].iterrows():
            n = int(r["n_images"])
            if outcomes is not None and len(outcomes) >= n:
                expected = float(outcomes[:n].mean())
            elif len(clean) and int(clean["n_images"].iloc[0]) == n:
                expected = float(clean["value"].iloc[0])
            else:
                continue
            if not math.isclose(expected, r["value"], abs_tol=1e-9):
                flags.append(
                    f"{model} seed {seed}: {r['label']} accuracy at 0 ({r['value']:.4f}) differs from the "
                    f"clean accuracy on the same {n} images ({expected:.4f})"
                )
    stated = {
        (r.model, r.seed, r.label, None if pd.isna(r.param) else r.param): (r.value, int(r.n_images))
        for r in accuracy.itertuples()
    }
    for (model, seed, metric, param, statistic, attack), values in examples.items():
        value, n = stated.get((model, seed, metric.label, param), (None, 0))
        if statistic != "accuracy" or attack or value is None:
            continue
        if len(values) != n or not math.isclose(float(values.mean()), value, abs_tol=1e-9):
            flags.append(
                f"{model} seed {seed}: {metric.label} per-image outcomes ({len(values)}) disagree with its "
                f"accuracy on {n} images"
            )
    return flags


def code_states(cells: pd.DataFrame, trainings: pd.DataFrame) -> dict[str, dict]:
    """Code state label -> the trainings ('model seed S') and the number of cells computed with
    it, from their provenance; 'not recorded' for numbers made before it was recorded."""
    states: dict[str, dict] = {}

    def add(label: str) -> dict:
        return states.setdefault(label, {"trainings": [], "cells": 0})

    for _, t in trainings.iterrows():
        recorded = json.loads(t.get("provenance") or "{}").get("training", {}).get("code") or []
        for state in recorded or [None]:
            add(state_label(state) if state else "not recorded")["trainings"].append(f"{t['model']} seed {t['seed']}")
    for _, c in cells.iterrows():
        state = json.loads(c.get("provenance") or "{}").get("code")
        add(state_label(state) if state else "not recorded")["cells"] += 1
    return states


def provenance_flags(cells: pd.DataFrame, trainings: pd.DataFrame) -> list[str]:
    """A report's numbers from more than one code state, or from uncommitted code, say so."""
    states = code_states(cells, trainings)
    known = {k: v for k, v in states.items() if k != "not recorded"}
    parts = [
        f"{label}: {len(v['trainings'])} trainings"
        + (f" ({', '.join(v['trainings'][:4])}{', …' if len(v['trainings']) > 4 else ''})" if v["trainings"] else "")
        + f", {v['cells']} cells"
        for label, v in states.items()
    ]
    flags = []
    if len(known) > 1:
        flags.append(f"provenance: the numbers come from {len(states)} code states: " + "; ".join(parts))
    dirty = [label for label in known if "(dirty)" in label]
    if dirty:
        flags.append(f"provenance: uncommitted code made some numbers ({'; '.join(dirty)})")
    notes = {
        json.loads(p or "{}").get("reconstructed")
        for frame in (cells, trainings)
        for p in (frame["provenance"] if "provenance" in frame else [])
    } - {None}
    flags += [f"provenance: {note}" for note in sorted(notes)]
    return flags


def detail_tables(df: pd.DataFrame, models: list[str], specs: list[ReportSpec]) -> list[tuple[str, str, pd.DataFrame]]:
    """(title, note, table) of each evaluation's own tables, built from its rows only."""
    out = []
    for spec in specs:
        keys = {(m.name, m.source) for m in spec.metrics()}
        mine = df[[(m, s) in keys for m, s in zip(df["metric"], df["source"])]]
        clean = df[(df["metric"] == "clean") & (df["source"] == "")]
        for t in spec.tables:
            table = t.build(pd.concat([mine, clean]) if t.with_clean else mine, models)
            if len(table):
                out.append((t.title, t.note, table))
    return out
