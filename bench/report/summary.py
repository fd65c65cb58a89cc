"""Pure functions from collected results to the numbers a leaderboard shows: per-seed summaries
(AUC, medians), mean ± SEM over seeds, ranks, paired deltas with bootstrap CIs and McNemar
tests, and sanity flags. No I/O here."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from bench.stats import curve_auc, mcnemar, mean_difference, mean_sem, median_shift, paired_bootstrap, per_image_auc, ranks

# accuracy-vs-parameter curves; the headline ones get an AUC column in the main table, the
# others (read off minimal distances, one per corruption) are detailed in their own tables
HEADLINE_CURVES = ("noise-", "pgd-", "transfer-", "autoattack-")
CURVE_PREFIXES = HEADLINE_CURVES + ("ensemble-", "corruption-")
MASKING_MARGIN = 0.02  # a transfer attack beating white-box PGD by more than this: gradient masking sign


def is_curve(evaluation: str) -> bool:
    return evaluation.startswith(CURVE_PREFIXES)


def curve_points(e: pd.DataFrame) -> pd.DataFrame:
    """The accuracy points of one curve (not its sanity probe), by parameter."""
    return e[e["statistic"] == "accuracy"].sort_values("param")


def seed_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Mean, SEM and number of seeds per model, evaluation, parameter and statistic."""
    rows = []
    for keys, g in df.groupby(["model", "regularizer", "evaluation", "param", "statistic"], dropna=False, sort=False):
        m, s, n = mean_sem(g["value"])
        rows.append({**dict(zip(["model", "regularizer", "evaluation", "param", "statistic"], keys)),
                     "mean": m, "sem": s, "n": n})
    return pd.DataFrame(rows)


def headline_per_seed(df: pd.DataFrame) -> pd.DataFrame:
    """One number per (model, seed, summary column): clean accuracy, the normalised AUC of each
    noise/PGD curve over its grid, the median of each minimal-perturbation estimate."""
    rows = []
    for (model, reg, seed), d in df.groupby(["model", "regularizer", "seed"], sort=False):
        for ev, e in d.groupby("evaluation", sort=False):
            if ev == "clean":
                rows.append((model, reg, seed, "clean", e["value"].iloc[0]))
            elif ev.startswith(HEADLINE_CURVES):
                e = curve_points(e)
                rows.append((model, reg, seed, f"{ev} AUC", curve_auc(e["param"], e["value"])))
            elif ev == "corruptions":
                rows.append((model, reg, seed, "corruptions mean", e[e["statistic"] == "mean accuracy"]["value"].iloc[0]))
            elif ev.startswith("minimal-"):
                rows.append((model, reg, seed, f"{ev} median", e[e["statistic"] == "median"]["value"].iloc[0]))
    return pd.DataFrame(rows, columns=["model", "regularizer", "seed", "column", "value"])


def _fmt(mean: float, sem: float, n: int, percent: bool) -> str:
    if math.isnan(mean):
        return "n/a"
    if percent:
        text = f"{mean * 100:.1f}" + (f" ± {sem * 100:.1f}" if n > 1 and not math.isnan(sem) else "")
    else:
        text = (f"{mean:.4g}" if math.isfinite(mean) else "inf") + (f" ± {sem:.2g}" if n > 1 and not math.isnan(sem) else "")
    return text


def main_table(df: pd.DataFrame, models: list[str]) -> pd.DataFrame:
    """One row per model (seeds aggregated): mean ± SEM of each headline column with its rank
    in parentheses (1 = most accurate / largest minimal perturbation), and the mean rank."""
    per_seed = headline_per_seed(df)
    if per_seed.empty:
        return pd.DataFrame()
    columns = list(dict.fromkeys(per_seed["column"]))
    stats = {(m, c): mean_sem(g["value"]) for (m, c), g in per_seed.groupby(["model", "column"], sort=False)}
    present = [m for m in models if (m, columns[0]) in stats]
    rank_of = {c: dict(zip(present, ranks([stats.get((m, c), (math.nan,))[0] for m in present]))) for c in columns}
    rows = []
    for m in present:
        reg = per_seed[per_seed["model"] == m]["regularizer"].iloc[0]
        row = {"model": m, "regularizer": reg, "seeds": int(per_seed[per_seed["model"] == m]["seed"].nunique())}
        for c in columns:
            mean, sem, n = stats.get((m, c), (math.nan, math.nan, 0))
            unit = "" if c.startswith("minimal-") else " %"
            row[c + unit] = f"{_fmt(mean, sem, n, not c.startswith('minimal-'))} ({rank_of[c][m]})"
        row["mean rank"] = f"{np.mean([rank_of[c][m] for c in columns]):.1f}"
        rows.append(row)
    return pd.DataFrame(rows)


def comparison_pairs(labels: dict[str, str], baseline: str | None = None, control: str | None = None) -> list[tuple[str, str]]:
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


def _stack(examples: dict, model: str, seeds: list[int], metric: str, param) -> np.ndarray | None:
    arrays = [examples.get((model, s, metric, param)) for s in seeds]
    if any(a is None for a in arrays) or len({len(a) for a in arrays}) != 1:
        return None
    return np.stack(arrays)


def paired_deltas(df: pd.DataFrame, examples: dict, pairs: list[tuple[str, str]], n_boot: int = 2000,
                  seed: int = 0) -> pd.DataFrame:
    """Differences model - reference on the same images and training seeds, per point
    (accuracy: McNemar) and per summary (clean, curve AUC, minimal median shift: bootstrap CI)."""
    rows = []
    for model, ref in pairs:
        seeds = sorted(set(df[df["model"] == model]["seed"]) & set(df[df["model"] == ref]["seed"]))
        if not seeds:
            continue
        evs = [e for e in dict.fromkeys(df[df["model"] == model]["evaluation"])]
        for ev in evs:
            rows_ev = df[(df["model"] == model) & (df["evaluation"] == ev)]
            params = sorted(set(rows_ev[rows_ev["statistic"] == "accuracy"]["param"].dropna())) or [None]
            if ev == "clean" or is_curve(ev):
                stacks = [(p, _stack(examples, model, seeds, ev, p), _stack(examples, ref, seeds, ev, p)) for p in params]
                if any(a is None or b is None or a.shape != b.shape for _, a, b in stacks):
                    continue
                for p, a, b in stacks:  # per point: accuracy difference and McNemar
                    t = mcnemar(a, b)
                    ci = paired_bootstrap(a, b, mean_difference, n_boot, seed)
                    rows.append({"model": model, "reference": ref, "evaluation": ev, "param": p, "summary": "accuracy",
                                 "delta": ci.estimate, "ci_low": ci.low, "ci_high": ci.high, "mcnemar_p": t.p_value,
                                 "model_only": t.a_only, "reference_only": t.b_only, "seeds": len(seeds), "images": a.shape[1]})
                if is_curve(ev):
                    levels = [p for p, _, _ in stacks]
                    a = per_image_auc(levels, np.stack([s[1] for s in stacks], axis=1))
                    b = per_image_auc(levels, np.stack([s[2] for s in stacks], axis=1))
                    ci = paired_bootstrap(a, b, mean_difference, n_boot, seed)
                    rows.append({"model": model, "reference": ref, "evaluation": ev, "param": None, "summary": "AUC",
                                 "delta": ci.estimate, "ci_low": ci.low, "ci_high": ci.high, "mcnemar_p": math.nan,
                                 "model_only": None, "reference_only": None, "seeds": len(seeds), "images": a.shape[1]})
            elif ev.startswith("minimal-") or ev == "corruptions":
                a, b = _stack(examples, model, seeds, ev, None), _stack(examples, ref, seeds, ev, None)
                if a is None or b is None or a.shape != b.shape:
                    continue
                summary, fn = ("median shift", median_shift) if ev.startswith("minimal-") else ("mean accuracy", mean_difference)
                ci = paired_bootstrap(a, b, fn, n_boot, seed)
                rows.append({"model": model, "reference": ref, "evaluation": ev, "param": None, "summary": summary,
                             "delta": ci.estimate, "ci_low": ci.low, "ci_high": ci.high, "mcnemar_p": math.nan,
                             "model_only": None, "reference_only": None, "seeds": len(seeds), "images": a.shape[1]})
    return pd.DataFrame(rows)


def delta_table(deltas: pd.DataFrame) -> pd.DataFrame:
    """The leaderboard's second table: one row per (model, reference), one column per summary."""
    if deltas.empty:
        return pd.DataFrame()
    rows = []
    for (model, ref), d in deltas.groupby(["model", "reference"], sort=False):
        row = {"model": model, "vs": ref, "seeds": int(d["seeds"].iloc[0])}
        for _, r in d.iterrows():
            if r["evaluation"] == "clean":
                row["Δ clean (pp)"] = f"{r['delta'] * 100:+.1f} [{r['ci_low'] * 100:+.1f}, {r['ci_high'] * 100:+.1f}] p={r['mcnemar_p']:.2g}"
            elif r["summary"] == "AUC" and r["evaluation"].startswith(HEADLINE_CURVES):
                row[f"Δ {r['evaluation']} AUC (pp)"] = f"{r['delta'] * 100:+.1f} [{r['ci_low'] * 100:+.1f}, {r['ci_high'] * 100:+.1f}]"
            elif r["summary"] == "mean accuracy":
                row["Δ corruptions mean (pp)"] = f"{r['delta'] * 100:+.1f} [{r['ci_low'] * 100:+.1f}, {r['ci_high'] * 100:+.1f}]"
            elif r["summary"] == "median shift":
                row[f"Δ {r['evaluation']} median"] = f"{r['delta']:+.3g} [{r['ci_low']:+.3g}, {r['ci_high']:+.3g}]"
        rows.append(row)
    return pd.DataFrame(rows)


def sanity_flags(df: pd.DataFrame, cells: pd.DataFrame) -> list[str]:
    """The flags each evaluation stored beside its numbers, then the checks that need two cells:
    a transfer (black-box) attack must not beat white-box PGD of the same norm and epsilon."""
    flags = []
    for _, c in cells.iterrows():
        flags += [f"{c['model']} seed {c['seed']}: {f}" for f in json.loads(c.get("flags") or "[]")]
    for (model, seed), d in df.groupby(["model", "seed"], sort=False):
        if d["value"].isna().any():
            flags.append(f"{model} seed {seed}: NaN values in {sorted(set(d[d['value'].isna()]['evaluation']))}")
        for ev in dict.fromkeys(d["evaluation"]):
            if not ev.startswith("transfer-"):
                continue
            transfer = curve_points(d[d["evaluation"] == ev]).set_index("param")["value"]
            norm = ev.split("-", 1)[1].split(":")[0]  # transfer-NORM:SOURCE
            white = curve_points(d[d["evaluation"] == f"pgd-{norm}"]).set_index("param")["value"]
            for eps in sorted(set(transfer.index) & set(white.index)):
                if transfer[eps] < white[eps] - MASKING_MARGIN:
                    flags.append(f"{model} seed {seed}: {ev} at {eps:g} ({transfer[eps]:.4f}) beats white-box PGD "
                                 f"({white[eps]:.4f}) by more than {MASKING_MARGIN * 100:g} points: suspect gradient masking")
    return flags


def ensemble_table(df: pd.DataFrame, models: list[str]) -> pd.DataFrame:
    """Per model and norm (mean over seeds): ensemble median [IQR], images found, and each
    attack's own median and share of wins."""
    rows = []
    minimal = df[df["evaluation"].str.startswith("minimal-")]
    for model in models:
        for ev in dict.fromkeys(minimal["evaluation"]):
            d = minimal[(minimal["model"] == model) & (minimal["evaluation"] == ev)]
            if d.empty:
                continue
            stat = d.groupby("statistic", sort=False)["value"].mean()
            row = {"model": model, "norm": ev.split("-", 1)[1], "median": f"{stat['median']:.4g}",
                   "IQR": f"[{stat.get('q25', math.nan):.4g}, {stat.get('q75', math.nan):.4g}]",
                   "found %": f"{stat['found'] * 100:.1f}"}
            for key in stat.index:
                if key.startswith("median:"):
                    attack = key.split(":", 1)[1]
                    row[attack] = f"{stat[key]:.4g} ({stat.get('wins:' + attack, math.nan) * 100:.0f}%)"
            if "black-box beats white-box" in stat:
                row["black-box < white-box/2 %"] = f"{stat['black-box beats white-box'] * 100:.1f}"
            rows.append(row)
    return pd.DataFrame(rows)


def corruption_table(df: pd.DataFrame, models: list[str]) -> pd.DataFrame:
    """Per model: mean corruption accuracy, then each corruption's accuracy averaged over its
    severities (and seeds), in %."""
    c = df[df["evaluation"].str.startswith("corruption-") & (df["statistic"] == "accuracy")]
    rows = []
    for model in models:
        d = c[c["model"] == model]
        if d.empty:
            continue
        per = d.groupby("evaluation", sort=False)["value"].mean()
        rows.append({"model": model, "mean": f"{per.mean() * 100:.1f}",
                     **{ev.split("-", 1)[1]: f"{v * 100:.1f}" for ev, v in per.items()}})
    return pd.DataFrame(rows)
