"""Build a suite's leaderboard from the store and write reports/SUITE/: leaderboard.md,
leaderboard.tex, index.html, results.csv, deltas.csv, PNG plots, models/*.md and
robustbench/*.json. Everything is written into a temporary folder first and then published by
one rename, so a failure or a kill never leaves a half-written or mixed report."""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from bench.cards import SuiteCard
from bench.errors import BenchError
from bench.evals.reporting import ReportSpec
from bench.io import ensure_writable_folder, recover_folder, replace_folder
from bench.plan import Plan, report_specs
from bench.report import analyses, exports, gallery, plots, render, views
from bench.report.bundle import write_bundle
from bench.report.collect import SuiteResults, collect
from bench.report.escape import csv_safe
from bench.report.inference import EndpointResult, Inference, comparison_table, evaluate_endpoints, paired_deltas
from bench.report.registration import endpoint_registration
from bench.report.summary import (
    best_table,
    comparison_pairs,
    consistency_flags,
    detail_tables,
    main_table,
    provenance_flags,
    sanity_flags,
    seed_summary,
)
from bench.store import ResultStore


@dataclass
class Leaderboard:
    data: SuiteResults
    specs: list[ReportSpec]  # how each evaluation is reported, as it declares
    table: pd.DataFrame  # one row per model
    deltas: pd.DataFrame  # long: every paired comparison point and summary
    delta_table: pd.DataFrame  # the comparisons shown: one row per (model, reference, column)
    flags: list[str]
    details: list[tuple[str, str, pd.DataFrame]] = field(default_factory=list)  # evaluations' own tables
    endpoints: list[EndpointResult] = field(default_factory=list)  # the card's primary endpoints, evaluated
    registration: list[str] = field(default_factory=list)  # whether they were committed before training
    best: pd.DataFrame = field(default_factory=pd.DataFrame)  # probability of being best per column
    plan: Plan | None = None  # where the checkpoints are: pictures of images and networks (none from a folder)
    pictures_from: Path | None = None  # re-rendered from a report folder: its pictures are kept as they were

    suite = property(lambda self: self.data.suite)
    results = property(lambda self: self.data.results)
    cells = property(lambda self: self.data.cells)
    trainings = property(lambda self: self.data.trainings)
    missing = property(lambda self: self.data.missing)

    def text_table(self) -> str:
        return tabulate(self.table, headers="keys", tablefmt="simple", showindex=False)

    def latex(self) -> str:
        return render.latex(self)


def inference_of(suite: SuiteCard) -> Inference:
    c = suite.compare
    return Inference(method=c.interval, level=c.level, n_boot=c.resamples)


def build_leaderboard(plan: Plan, store: ResultStore) -> Leaderboard:
    suite = plan.run.suite
    board = leaderboard_of(collect(suite, store, plan.cells, plan.labels, plan.num_classes), report_specs(suite))
    board.plan = plan
    return board


def leaderboard_of(
    data: SuiteResults, specs: list[ReportSpec], how: Inference | None = None, card_path: Path | None = None
) -> Leaderboard:
    """Every table of a report from collected results (the store's, or a report folder's);
    ``card_path``: the suite card whose git history dates its endpoints (default: the suite's own)."""
    suite = data.suite
    models = [c.name for c in suite.cards]
    if data.results.empty:
        return Leaderboard(data, specs, pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), [])
    labels = {c.name: c.regularizer_label for c in suite.cards}
    pairs = comparison_pairs(labels, suite.compare.baseline or None, suite.compare.control or None)
    primary = {(e.model, e.reference, e.evaluation, e.param, e.summary) for e in suite.endpoints}
    pairs += [(e.model, e.reference) for e in suite.endpoints if (e.model, e.reference) not in pairs]
    deltas = paired_deltas(data.results, data.examples, pairs, specs, how or inference_of(suite), primary)
    registration, late = (
        endpoint_registration(card_path or Path(suite.path), data.trainings) if suite.endpoints else ([], [])
    )
    return Leaderboard(
        data,
        specs,
        main_table(data.results, models, specs),
        deltas,
        comparison_table(deltas, specs),
        sanity_flags(data.results, data.cells, specs)
        + consistency_flags(data.results, data.examples)
        + provenance_flags(data.cells, data.trainings)
        + late,
        detail_tables(data.results, models, specs) + analysis_tables(data, models),
        evaluate_endpoints(suite.endpoints, data.results, specs),
        registration,
        best_table(data.results, models, specs),
    )


def analysis_tables(data: SuiteResults, models: list[str]) -> list[tuple[str, str, pd.DataFrame]]:
    """Per-class and error-consistency analyses of the stored per-image outcomes (no evaluation re-run)."""
    out = []
    classes = analyses.class_table(data.examples, data.labels, data.num_classes)
    points = analyses.middle_points(data.examples)
    worst = analyses.worst_class_table(classes, models, points)
    if len(worst):
        out.append(
            (
                "Worst-class accuracy",
                "clean and each curve at the middle of its grid: the accuracy on the images of the class a model "
                "does worst on (mean over training seeds), and that class (the most frequent over seeds); every "
                "class's accuracy at every point is in per_class.csv",
                worst,
            )
        )
    kappas = analyses.kappa_table(data.examples, models)
    summary = analyses.kappa_summary(kappas, points)
    if len(summary):
        out.append(
            (
                "Error consistency (Cohen's kappa)",
                "agreement of two models' per-image correctness beyond what their accuracies imply by chance "
                "(0: independent errors, 1: the same errors), on the same images and training seed, mean over seeds; "
                "clean and each curve at the middle of its grid (every point in kappa.csv)",
                summary,
            )
        )
    return out


def _write_all(board: Leaderboard, tmp: Path) -> None:
    models = [c.name for c in board.suite.cards]
    figures = plots.curve_figures(seed_summary(board.results), board.specs, board.suite.name, tmp, board.results)
    figures.update(plots.distribution_figures(board.data.examples, models, board.specs, tmp))
    figures.update(views.scatter_figures(board.results, board.specs, tmp))
    figures.update(views.pooled_heatmaps(board.results, board.specs, models, tmp))
    if views.forest_plot(board.deltas, tmp / "forest.png"):
        figures["forest.png"] = tmp / "forest.png"
    if board.plan is not None:
        figures.update(gallery.pictures(board.plan, tmp))
    elif board.pictures_from is not None:
        for name in gallery.NAMES:
            if (board.pictures_from / name).is_file():
                shutil.copy2(board.pictures_from / name, tmp / name)
                figures[name] = tmp / name
    if plots.layer_weights(board.trainings, tmp / "layer_weights.png"):
        figures["layer_weights.png"] = tmp / "layer_weights.png"
    (tmp / "leaderboard.md").write_text(render.markdown(board, list(figures)))
    (tmp / "leaderboard.tex").write_text(board.latex())
    (tmp / "index.html").write_text(render.html_page(board, figures))
    write_bundle(board.data, tmp)
    csv_safe(board.deltas).to_csv(tmp / "deltas.csv", index=False)
    models = [c.name for c in board.suite.cards]
    classes = analyses.class_table(board.data.examples, board.data.labels, board.data.num_classes)
    if len(classes):
        csv_safe(classes).to_csv(tmp / "per_class.csv", index=False)
    kappas = analyses.kappa_table(board.data.examples, models)
    if len(kappas):
        csv_safe(kappas).to_csv(tmp / "kappa.csv", index=False)
    cards = {c.name: c for c in board.suite.cards}
    (tmp / "models").mkdir()
    for _, t in board.trainings.iterrows():
        (tmp / "models" / f"{t['model']}-seed{t['seed']}.md").write_text(
            exports.model_card(cards[t["model"]], t, board.results, board.suite.name, board.specs)
        )
    for card in board.suite.cards:
        if card.external and card.name in set(board.results["model"]):
            (tmp / "models" / f"{card.name}.md").write_text(
                exports.external_card(card, board.results, board.suite.name, board.specs)
            )
    (tmp / "robustbench").mkdir()
    for name in dict.fromkeys(board.results["model"]):
        info = exports.robustbench_info(cards[name], board.results, board.specs)
        (tmp / "robustbench" / f"{name}.json").write_text(json.dumps(info, indent=1) + "\n")


def report_destination(reports_dir: Path, suite: str) -> Path:
    """Where the report goes, checked before any work: the reports folder must take files and the
    suite's entry, if present, must be a folder."""
    dest = Path(reports_dir) / suite
    ensure_writable_folder(Path(reports_dir), "the reports folder (--reports)", "pass --reports to a writable folder")
    if dest.exists() and not dest.is_dir():
        raise BenchError(f"{dest}: is a file where the {suite} report folder goes; move it away or pass --reports")
    return dest


def write_reports(board: Leaderboard, reports_dir: Path) -> Path:
    return publish(board, report_destination(reports_dir, board.suite.name))


def publish(board: Leaderboard, dest: Path) -> Path:
    """Written whole into a hidden sibling folder, then published by one rename; leftovers of a
    killed run (and of older versions, inside the folder) are cleaned first."""
    if board.results.empty:
        raise BenchError(
            f"suite {board.suite.name!r}: no results in the store; run 'bench run {board.suite.name}' first"
        )
    recover_folder(dest)
    for legacy in dest.glob(".tmp-*") if dest.is_dir() else []:
        shutil.rmtree(legacy, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.tmp-"))
    try:
        _write_all(board, tmp)
        replace_folder(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest
