"""Pure functions over the long results table: seed aggregation, leaderboard columns and
sanity flags. No I/O here."""
from __future__ import annotations

import math

import pandas as pd

ACCURACY_KINDS = ("clean", "noise-", "pgd-")


def seed_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Mean, SEM and number of seeds per model, evaluation, parameter and statistic."""
    keys = ["model", "regularizer", "evaluation", "param", "statistic"]
    g = df.groupby(keys, dropna=False, sort=False)["value"]
    out = g.agg(mean="mean", n="count", sd=lambda v: v.std(ddof=1) if len(v) > 1 else math.nan).reset_index()
    out["sem"] = out["sd"] / out["n"].pow(0.5)
    return out.drop(columns="sd")


def _fmt(mean: float, sem: float, n: int, percent: bool) -> str:
    if math.isnan(mean):
        return "n/a"
    scale = 100.0 if percent else 1.0
    text = f"{mean * scale:.1f}" if percent else (f"{mean:.4g}" if math.isfinite(mean) else "inf")
    if n > 1 and not math.isnan(sem):
        text += f" ± {sem * scale:.1f}" if percent else f" ± {sem:.2g}"
    return text


def leaderboard_table(summary: pd.DataFrame, models: list[str]) -> pd.DataFrame:
    """One row per model; columns: clean, per noise kind the mean over its grid and the largest
    level, per PGD norm each epsilon > 0, per minimal norm the median (and found-rate if < 100%)."""
    rows = []
    for model in models:
        s = summary[summary["model"] == model]
        if s.empty:
            continue
        row = {"model": model, "regularizer": s["regularizer"].iloc[0], "seeds": int(s["n"].max())}
        for ev in dict.fromkeys(s["evaluation"]):
            e = s[s["evaluation"] == ev].sort_values("param")
            if ev == "clean":
                r = e.iloc[0]
                row["clean %"] = _fmt(r["mean"], r["sem"], r["n"], True)
            elif ev.startswith("noise-"):
                top = e.iloc[-1]
                row[f"{ev} mean %"] = _fmt(e["mean"].mean(), math.nan, 1, True)
                row[f"{ev} @{top['param']:g} %"] = _fmt(top["mean"], top["sem"], top["n"], True)
            elif ev.startswith("pgd-"):
                for _, r in e[e["param"] > 0].iterrows():
                    row[f"{ev} ε={r['param']:g} %"] = _fmt(r["mean"], r["sem"], r["n"], True)
            elif ev.startswith("minimal-"):
                med = e[e["statistic"] == "median"].iloc[0]
                found = e[e["statistic"] == "found"].iloc[0]
                text = _fmt(med["mean"], med["sem"], med["n"], False)
                if found["mean"] < 1:
                    text += f" (found {found['mean'] * 100:.0f}%)"
                row[f"{ev} median"] = text
        rows.append(row)
    return pd.DataFrame(rows)


def sanity_flags(df: pd.DataFrame, tol: float = 1e-9) -> list[str]:
    """Checks every accuracy curve and minimal estimate; each flag names model, seed and metric."""
    flags = []
    for (model, seed), d in df.groupby(["model", "seed"], sort=False):
        clean = d[d["evaluation"] == "clean"]["value"]
        clean = clean.iloc[0] if len(clean) else math.nan
        if d["value"].isna().any():
            flags.append(f"{model} seed {seed}: NaN values in {sorted(set(d[d['value'].isna()]['evaluation']))}")
        for ev, e in d.groupby("evaluation", sort=False):
            if ev.startswith(("noise-", "pgd-")):
                e = e.sort_values("param")
                zero = e[e["param"] == 0]["value"]
                if len(zero) and abs(zero.iloc[0] - clean) > tol:
                    flags.append(f"{model} seed {seed}: {ev} at level 0 is {zero.iloc[0]:.4f}, clean accuracy is {clean:.4f}")
            if ev.startswith("pgd-"):
                vals = e["value"].tolist()
                if any(b > a + tol for a, b in zip(vals, vals[1:])):
                    flags.append(f"{model} seed {seed}: {ev} robust accuracy rises with epsilon {vals}")
                if vals and vals[0] > clean + tol:
                    flags.append(f"{model} seed {seed}: {ev} robust accuracy above clean accuracy")
            if ev.startswith("minimal-"):
                found = e[e["statistic"] == "found"]["value"]
                if len(found) and found.iloc[0] < 1:
                    flags.append(f"{model} seed {seed}: {ev} found no adversarial for {(1 - found.iloc[0]) * 100:.1f}% "
                                 "of images (counted as inf; the median is an upper bound)")
    return flags
