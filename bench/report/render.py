"""Text renderings of a leaderboard: Markdown (the published report), LaTeX (the main table)
and a self-contained HTML page (tables and plots inline, no network)."""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from bench.models.resnet import TAPS

DELTA_NOTE = ("Δ = model − reference on the same evaluation images and training seeds. Brackets: 95% percentile "
              "bootstrap interval over images (2,000 resamples, seed 0). p: exact McNemar test on per-image "
              "correctness, pooled over seeds. AUC: mean accuracy over the evaluation's grid (trapezoid rule).")


ENSEMBLE_NOTE = ("Median and interquartile range over images of the smallest perturbation any attack found ([0,1] "
                 "scale; clean errors 0, not found inf). Per attack: the median of its own results and, in "
                 "parentheses, the share of correctly classified images on which it found the smallest. Attacks run "
                 "in the listed order and search below, or start from, the running best, so per-attack numbers are "
                 "conditional on that order. Black-box attacks finding less than half the white-box distance on many "
                 "images is a sign of gradient masking.")


def protocol_text(board) -> str:
    s = board.suite
    subset = board.results["subset_hash"].iloc[0] if len(board.results) else "-"
    return (f"Dataset `{s.dataset}`, evaluation subset of {s.subset.size} test images (seed {s.subset.seed}, hash "
            f"`{subset}`), training seeds {list(s.seeds)}. Accuracies in %, mean ± SEM over training seeds (SEM "
            "only with more than one seed); the rank of each column is in parentheses (1 = best). Robust accuracy "
            "counts clean errors as failures (Foolbox semantics). Minimal perturbations are medians over images at "
            "[0,1] pixel scale of the smallest found by the attack ensemble: upper bounds on the true minimum. "
            "Evaluations with max_images run on the first images of the subset (see 'What was evaluated').")


def evaluation_lines(board) -> list[str]:
    lines = []
    if board.cells.empty:
        return lines
    for (kind, params), c in board.cells.groupby(["evaluation", "params"], sort=False):
        notes = json.loads(c["notes"].iloc[0])
        p = ", ".join(f"{k}={v}" for k, v in json.loads(params).items()) or "-"
        extra = "; ".join(f"{k}: {v}" for k, v in notes.items())
        lines.append(f"`{kind}` ({p}) on {int(c['n_images'].iloc[0])} images x {c['seed'].nunique()} seed(s)"
                     + (f"; {extra}" if extra else ""))
    return lines


def layer_weight_rows(trainings: pd.DataFrame) -> list[list]:
    rows = []
    for _, t in trainings.iterrows():
        w = json.loads(t["layer_weights"])
        rows.append([t["model"], t["seed"], t["best_epoch"], *([f"{v:.3f}" for v in w] if w else ["-"] * len(TAPS))])
    return rows


def provenance_rows(trainings: pd.DataFrame) -> list[list]:
    return [[t["model"], t["seed"], t["card_hash"], t["checkpoint_hash"], t["device"], f"{t['seconds']:.0f}"]
            for _, t in trainings.iterrows()]


PROVENANCE_HEADERS = ["model", "seed", "card hash", "checkpoint hash", "trained on", "train s"]
WEIGHT_HEADERS = ["model", "seed", "best epoch", *TAPS]


def markdown(board, plots: list[str]) -> str:
    s = board.suite
    md = lambda df: tabulate(df, headers="keys", tablefmt="github", showindex=False) if len(df) else "(none)"  # noqa: E731
    out = [f"# Leaderboard: suite `{s.name}` (version {s.version})", ""]
    if s.description:
        out += [s.description, ""]
    out += [protocol_text(board), "", "## Models", "", md(board.table), ""]
    out += ["## Paired comparisons", "", DELTA_NOTE, "", md(board.delta_table), "",
            "Every point (each level and epsilon) with its McNemar test is in `deltas.csv`.", ""]
    if len(board.ensemble):
        out += ["## Minimal-perturbation ensemble", "", ENSEMBLE_NOTE, "", md(board.ensemble), ""]
    if len(board.corruptions):
        out += ["## Corruptions (accuracy %, mean over severities)", "", md(board.corruptions), ""]
    out += ["## Sanity flags", "", *([f"- {f}" for f in board.flags] or ["- none raised"]), ""]
    out += ["## What was evaluated", "", *[f"- {line}" for line in evaluation_lines(board)], ""]
    if plots:
        out += ["## Plots", "", *[f"![{p}]({p})" for p in plots], ""]
    if board.missing:
        out += [f"## Missing cells (run `bench run {s.name}`)", "", *[f"- {m}" for m in board.missing], ""]
    if not board.trainings.empty:
        out += ["## Learned layer weights (softmax(θ) at the best-validation epoch)", "",
                tabulate(layer_weight_rows(board.trainings), headers=WEIGHT_HEADERS, tablefmt="github"), ""]
        out += ["## Provenance", "", tabulate(provenance_rows(board.trainings), headers=PROVENANCE_HEADERS, tablefmt="github"), "",
                f"Evaluated on {', '.join(sorted(set(board.results['device'])))}; packages {board.cells['packages'].iloc[0]}. "
                "Per-model cards are in `models/`, RobustBench-format exports in `robustbench/`.", ""]
    return "\n".join(out)


def latex(board) -> str:
    """The main table as a LaTeX tabular (booktabs rules)."""
    def esc(v) -> str:
        t = str(v)
        for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"),
                     ("±", r"$\pm$"), ("ε", r"$\epsilon$"), ("Δ", r"$\Delta$")):
            t = t.replace(a, b)
        return t

    df = board.table
    cols = list(df.columns)
    lines = [r"\begin{tabular}{" + "l" * 2 + "r" * (len(cols) - 2) + "}", r"\toprule",
             " & ".join(esc(c) for c in cols) + r" \\", r"\midrule"]
    lines += [" & ".join(esc(v) for v in row) + r" \\" for row in df.itertuples(index=False)]
    lines += [r"\bottomrule", r"\end{tabular}",
              f"% suite {board.suite.name} v{board.suite.version}: mean ± SEM over seeds {list(board.suite.seeds)}, rank in parentheses"]
    return "\n".join(lines) + "\n"


CSS = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:14px}th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%;margin:0.5em 0}
.flag{color:#8a5a00}.note{color:#555;font-size:13px}code{background:#f6f6f6;padding:0 3px}"""


def _table_html(df: pd.DataFrame) -> str:
    return df.to_html(index=False, escape=True, border=0) if len(df) else "<p>(none)</p>"


def html_page(board, plots: dict[str, Path]) -> str:
    """Self-contained: CSS and PNGs are inline. A small script records, after load, how many
    images decoded, so a headless browser can check the page rendered."""
    s = board.suite
    e = html.escape
    imgs = "".join(f'<figure><img alt="{e(name)}" src="data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}">'
                   f"<figcaption>{e(name)}</figcaption></figure>" for name, path in plots.items())
    flags = "".join(f'<li class="flag">{e(f)}</li>' for f in board.flags) or "<li>none raised</li>"
    evals = "".join(f"<li>{e(line)}</li>" for line in evaluation_lines(board))
    weights = pd.DataFrame(layer_weight_rows(board.trainings), columns=WEIGHT_HEADERS) if not board.trainings.empty else pd.DataFrame()
    prov = pd.DataFrame(provenance_rows(board.trainings), columns=PROVENANCE_HEADERS) if not board.trainings.empty else pd.DataFrame()
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(s.name)} leaderboard</title><style>{CSS}</style></head>
<body>
<h1>Leaderboard: suite <code>{e(s.name)}</code> (version {s.version})</h1>
<p>{e(s.description)}</p><p class="note">{e(protocol_text(board))}</p>
<h2>Models</h2>{_table_html(board.table)}
<h2>Paired comparisons</h2><p class="note">{e(DELTA_NOTE)}</p>{_table_html(board.delta_table)}
{"<h2>Minimal-perturbation ensemble</h2><p class='note'>" + e(ENSEMBLE_NOTE) + "</p>" + _table_html(board.ensemble) if len(board.ensemble) else ""}
{"<h2>Corruptions (accuracy %, mean over severities)</h2>" + _table_html(board.corruptions) if len(board.corruptions) else ""}
<h2>Sanity flags</h2><ul>{flags}</ul>
<h2>Plots</h2>{imgs or "<p>(none)</p>"}
<h2>What was evaluated</h2><ul>{evals}</ul>
<h2>Learned layer weights</h2>{_table_html(weights)}
<h2>Provenance</h2>{_table_html(prov)}
<script>window.addEventListener("load", () => {{
  const ok = [...document.images].filter(i => i.complete && i.naturalWidth > 0).length;
  document.body.dataset.imagesLoaded = ok; document.body.dataset.tables = document.querySelectorAll("table").length;
}});</script>
</body></html>
"""
