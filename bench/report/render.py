"""Text renderings of a leaderboard: Markdown (the published report), LaTeX (the main table)
and a self-contained HTML page (tables and plots inline, no network)."""

from __future__ import annotations

import base64
import functools
import json
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from bench.report.escape import latex_text, markdown_cells, markdown_text
from bench.stats import MIN_SEEDS

INTERVAL_WORDS = {
    "t": "Student-t interval on the per-seed statistics (df = seeds - 1): the training seed is the unit of "
    "replication, and the interval is about the training procedures on these evaluation images",
    "hierarchical-bootstrap": "percentile bootstrap, seeds resampled and then images within each seed (it "
    "covers less than its level at few seeds: tests/test_coverage.py)",
    "crossed-bootstrap": "percentile bootstrap, seeds resampled and one image resample shared by all seeds "
    "(images as a random factor: the question of new images; below its level at few seeds)",
}


def delta_note(board) -> str:
    c = board.suite.compare
    return (
        "Δ = model − reference: the mean over the training seeds both have of one paired statistic per seed "
        "(the difference of accuracies or AUCs on the same evaluation images, which saw the same noise and "
        "corruptions; for minimal perturbations the log ratio of the two medians, shown as a % change). "
        f"{c.level * 100:g}% CI: {INTERVAL_WORDS[c.interval]}; none with fewer than {MIN_SEEDS} seeds. p: exact "
        "sign-flip permutation test of the per-seed statistics (all 2^S sign patterns; with 3 seeds the smallest "
        "possible p is 0.25, so 3 seeds cannot show an effect; with 10, 0.002); p Holm: adjusted over each table. MDE 80%: the "
        "true effect a two-sided t test at 5% would detect with 80% power, given the per-seed SD. Every row is "
        "exploratory unless marked primary (the card's endpoints). AUC: mean accuracy over the evaluation's grid "
        "(trapezoid rule). deltas.csv has every grid point, and per training seed an exact McNemar test: it "
        "compares those two sets of weights on these images, not the training procedures."
    )


FAMILY_TITLES = {
    "comparisons table": "Robustness and accuracy",
    "regularizer checks": "What the regularizer did (similarity; its own Holm family)",
}


def comparison_tables(board) -> list[tuple[str, pd.DataFrame]]:
    """The comparisons table split by Holm family: (title, rows without the family column)."""
    t = board.delta_table
    if not len(t):
        return []
    return [(FAMILY_TITLES.get(f, f), g.drop(columns="family")) for f, g in t.groupby("family", sort=False)]


BEST_NOTE = (
    "Probability of being best in each column (higher is better, or lower for a loss) over a bootstrap of "
    "the training seeds all models share, drawn alike for every model; 2,000 resamples. With few seeds it "
    "is a description of the spread, not a test."
)


def protocol_text(board) -> str:
    s = board.suite
    subset = board.results["subset_hash"].iloc[0] if len(board.results) else "-"
    n = int(board.results["n_images"].max()) if len(board.results) else s.subset.size
    size = f"{n}" if n >= s.subset.size else f"{n} (the card asks for {s.subset.size}; the split has {n})"
    return (
        f"Dataset `{s.dataset}`, evaluation subset of {size} {s.subset.split} images (seed {s.subset.seed}, hash "
        f"`{subset}`), training seeds {list(s.seeds)}. Accuracies in %, mean ± SEM over training seeds (SEM "
        "only with more than one seed). Robust accuracy "
        "counts clean errors as failures (Foolbox semantics). Minimal perturbations are medians over images at "
        "[0,1] pixel scale of the smallest found by the attack ensemble: upper bounds on the true minimum. "
        "Evaluations with max_images run on the first images of the subset (see 'What was evaluated')."
    )


def evaluation_lines(board) -> list[str]:
    lines = []
    if board.cells.empty:
        return lines
    for (kind, params), c in board.cells.groupby(["evaluation", "params"], sort=False):
        notes = json.loads(c["notes"].iloc[0])
        p = ", ".join(f"{k}={v}" for k, v in json.loads(params).items()) or "-"
        extra = "; ".join(f"{k}: {v}" for k, v in notes.items())
        lines.append(
            f"`{kind}` ({p}) on {int(c['n_images'].iloc[0])} images x {c['seed'].nunique()} seed(s)"
            + (f"; {extra}" if extra else "")
        )
    return lines


def layer_weight_taps(trainings: pd.DataFrame) -> list[str]:
    """The regularizer's taps, as each training recorded them."""
    return next((json.loads(t) for t in trainings.get("taps", []) if json.loads(t)), [])


def layer_weight_rows(trainings: pd.DataFrame) -> list[list]:
    n = len(layer_weight_taps(trainings))
    rows = []
    for _, t in trainings.iterrows():
        w = json.loads(t["layer_weights"])
        rows.append([t["model"], t["seed"], t["best_epoch"], *([f"{v:.3f}" for v in w] if w else ["-"] * n)])
    return rows


def weight_headers(trainings: pd.DataFrame) -> list[str]:
    return ["model", "seed", "best epoch", *layer_weight_taps(trainings)]


def provenance_rows(trainings: pd.DataFrame) -> list[list]:
    return [
        [t["model"], t["seed"], t["card_hash"], t["checkpoint_hash"], t["device"], f"{t['seconds']:.0f}"]
        for _, t in trainings.iterrows()
    ]


PROVENANCE_HEADERS = ["model", "seed", "card hash", "checkpoint hash", "trained on", "train s"]


def column_notes(board) -> list[str]:
    """What the main table's less obvious columns mean, as the evaluations declare it."""
    return [f"`{s.column}`: {s.note}" for spec in board.specs for s in spec.summaries if s.note]


def target_lines(trainings: pd.DataFrame) -> list[str]:
    """Per regularized model, its similarity target as trained (the first seed's description; for a
    shuffle control, the share of pairs its permutation changed, over seeds)."""
    lines = []
    for model, g in trainings.groupby("model", sort=False):
        described = [json.loads(t) for t in g["target"] if t]
        if not described:
            continue
        first = {k: v for k, v in described[0].items() if k not in ("pairs_changed", "shuffle_seed")}
        text = ", ".join(f"{k} {v}" for k, v in first.items())
        changed = [d["pairs_changed"] for d in described if "pairs_changed" in d]
        if changed:
            text += (
                f"; the shuffle changed {min(changed) * 100:.1f}-{max(changed) * 100:.1f}% of target pairs over "
                f"{len(changed)} seed(s) (one permutation per seed): with few changed pairs the control is close "
                "to the treatment"
            )
        lines.append(f"`{model}`: {text}")
    return lines


def markdown(board, plots: list[str]) -> str:
    s = board.suite
    md = lambda df: (
        tabulate(markdown_cells(df), headers="keys", tablefmt="github", showindex=False) if len(df) else "(none)"
    )  # noqa: E731
    out = [f"# Leaderboard: suite `{s.name}` (version {s.version})", ""]
    if board.endpoints:
        out += ["## Primary endpoints", "", *[f"- {e.line(markdown_text)}" for e in board.endpoints], ""]
        out += [*endpoint_notes(board), ""]
    if s.description:
        out += [markdown_text(s.description), ""]
    out += [
        protocol_text(board),
        "",
        "## Models",
        "",
        md(board.table),
        "",
        *[f"- {n}" for n in column_notes(board)],
        *([""] if column_notes(board) else []),
    ]
    if len(board.best):
        out += ["## Probability of being best", "", BEST_NOTE, "", md(board.best), ""]
    out += ["## Paired comparisons (exploratory unless primary)", "", delta_note(board), ""]
    for title, table in comparison_tables(board):
        out += [f"### {title}", "", md(table), ""]
    for title, note, table in board.details:
        out += [f"## {title}", "", *([note, ""] if note else []), md(table), ""]
    out += ["## Sanity flags", "", *([f"- {f}" for f in board.flags] or ["- none raised"]), ""]
    out += ["## What was evaluated", "", *[f"- {line}" for line in evaluation_lines(board)], ""]
    if plots:
        out += ["## Plots", "", *[f"![{p}]({p})" for p in plots], ""]
    if board.missing:
        out += [f"## Missing cells (run `bench run {s.name}`)", "", *[f"- {m}" for m in board.missing], ""]
    if not board.trainings.empty:
        if target_lines(board.trainings):
            out += ["## Similarity targets", "", *[f"- {line}" for line in target_lines(board.trainings)], ""]
        out += [
            "## Learned layer weights (softmax(θ) at the best-validation epoch)",
            "",
            tabulate(layer_weight_rows(board.trainings), headers=weight_headers(board.trainings), tablefmt="github"),
            "",
        ]
        out += [
            "## Provenance",
            "",
            tabulate(provenance_rows(board.trainings), headers=PROVENANCE_HEADERS, tablefmt="github"),
            "",
            f"Evaluated on {', '.join(sorted(set(board.results['device'])))}; packages {board.cells['packages'].iloc[0]}. "
            "Per-model cards are in `models/`, RobustBench-format exports in `robustbench/`.",
            "",
        ]
    return "\n".join(out)


def endpoint_notes(board) -> list[str]:
    """Where each endpoint's numbers and verdicts come from."""
    if not board.endpoints:
        return []
    return [
        "Primary endpoints are the suite card's [[endpoints]], tested on the per-seed paired statistic and "
        "Holm-adjusted among themselves. Verdicts: met (the effect lies on the claimed side), not met (the "
        "interval lies on the other side, or within the stated equivalence margin, or the health rule fails), "
        "inconclusive (neither; borderline when the adjusted p is below twice alpha). "
        + "Order of endpoints and data: "
        + " ".join(board.registration)
    ]


def latex(board) -> str:
    """The main table as a LaTeX tabular (booktabs rules)."""

    esc = latex_text

    df = board.table
    cols = list(df.columns)
    lines = [
        r"\begin{tabular}{" + "l" * 2 + "r" * (len(cols) - 2) + "}",
        r"\toprule",
        " & ".join(esc(c) for c in cols) + r" \\",
        r"\midrule",
    ]
    lines += [" & ".join(esc(v) for v in row) + r" \\" for row in df.itertuples(index=False)]
    lines += [
        r"\bottomrule",
        r"\end{tabular}",
        "% "
        + " ".join(
            f"suite {board.suite.name} v{board.suite.version}: mean ± SEM over seeds {list(board.suite.seeds)}".split()
        ),
    ]
    return "\n".join(lines) + "\n"


CSS = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:14px}th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%;margin:0.5em 0}
.flag{color:#8a5a00}.note{color:#555;font-size:13px}code{background:#f6f6f6;padding:0 3px}"""


@functools.cache
def _templates():
    """Autoescaping on: every text a template prints is escaped unless it is markup we made
    (pandas' tables, with their cells escaped, passed as Markup)."""
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("bench.report", "templates"),
        autoescape=jinja2.select_autoescape(("html.j2",)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def _table_html(df: pd.DataFrame):
    from markupsafe import Markup

    return Markup(df.to_html(index=False, escape=True, border=0) if len(df) else "<p>(none)</p>")


def html_page(board, plots: dict[str, Path]) -> str:
    """Self-contained: CSS and PNGs are inline (bench/report/templates/). A small script records,
    after load, how many images decoded, so a headless browser can check the page rendered, and
    sorts a table by the column whose header is clicked."""
    t = board.trainings
    weights = pd.DataFrame(layer_weight_rows(t), columns=weight_headers(t)) if not t.empty else pd.DataFrame()
    prov = pd.DataFrame(provenance_rows(t), columns=PROVENANCE_HEADERS) if not t.empty else pd.DataFrame()
    return (
        _templates()
        .get_template("leaderboard.html.j2")
        .render(
            suite=board.suite,
            css=CSS,
            endpoints=[x.line(strong="") for x in board.endpoints],
            endpoint_notes=endpoint_notes(board) if board.endpoints else [],
            protocol=protocol_text(board),
            table=_table_html(board.table),
            column_notes=column_notes(board),
            best=_table_html(board.best) if len(board.best) else "",
            best_note=BEST_NOTE,
            delta_note=delta_note(board),
            deltas=_table_html(board.delta_table),
            details=[(title, note, _table_html(table)) for title, note, table in board.details],
            flags=board.flags,
            figures=[(name, base64.b64encode(path.read_bytes()).decode()) for name, path in plots.items()],
            evaluations=evaluation_lines(board),
            targets=target_lines(t) if not t.empty else [],
            weights=_table_html(weights),
            provenance=_table_html(prov),
        )
    )


def board_text(board) -> str:
    """The leaderboard as the CLI prints it: endpoints first, the main table, the probability of
    being best and the paired comparisons (flags and missing cells are printed beside it)."""
    lines = [e.line(strong="") for e in board.endpoints]
    lines.append(board.text_table())
    if len(board.best):
        lines += ["\nprobability of being best (seed bootstrap):", board.best.to_string(index=False)]
    if len(board.delta_table):
        c = board.suite.compare
        lines.append(
            f"\npaired comparisons, exploratory (Δ = model - reference over shared training seeds; {c.level * 100:g}% "
            f"CI by {c.interval} on the per-seed statistic; p: exact sign-flip test; Holm over the table; MDE at 80% "
            "power; none below 3 seeds):"
        )
        for title, table in comparison_tables(board):
            lines += [f"{title}:", table.to_string(index=False)]
    return "\n".join(lines)
