"""The report's figures drawn from a published folder's own tables (no store, no evaluation)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.plan import report_specs
from bench.report.bundle import read_bundle
from bench.report.views import forest_plot, pooled_heatmaps, scatter_figures

REPORTS = Path(__file__).resolve().parents[1] / "reports"


def test_forest_plot_draws_intervals_and_skips_contrasts_without_one(tmp_path):
    deltas = pd.read_csv(REPORTS / "quick" / "deltas.csv")
    assert forest_plot(deltas, tmp_path / "forest.png") and (tmp_path / "forest.png").stat().st_size > 10_000
    no_interval = deltas.assign(ci_low=float("nan"), ci_high=float("nan"))
    assert not forest_plot(no_interval, tmp_path / "none.png") and not (tmp_path / "none.png").exists()


def test_scatters_and_heatmaps_follow_the_declarations(tmp_path):
    quick = read_bundle(REPORTS / "quick")
    drawn = scatter_figures(quick.results, report_specs(quick.suite), tmp_path)
    assert set(drawn) == {"clean_vs_robust.png", "similarity_vs_robust_0.png"}  # quick measures brain similarity
    assert pooled_heatmaps(quick.results, report_specs(quick.suite), ["quick-none"], tmp_path) == {}  # nothing pooled
    battery = read_bundle(REPORTS / "battery-quick")
    maps = pooled_heatmaps(
        battery.results, report_specs(battery.suite), [c.name for c in battery.suite.cards], tmp_path
    )
    assert list(maps) == ["corruptions_heatmap.png"]
