"""Reports of a tiny two-seed suite: tables, paired statistics, plots, exports, HTML in Chromium."""

import json
import math
import os
import re
import shutil
import subprocess

import pandas as pd
import pytest
from conftest import TINY_SUITE, enter, run_cli, write_card_root

pytestmark = pytest.mark.slow

# what the pictures of corruptions and similarity matrices are drawn from
EXTRA_EVALUATIONS = """
[[evaluations]]
kind = "corruptions"
corruptions = ["gaussian_noise", "fog"]
severities = [1, 5]

[[evaluations]]
kind = "similarity"
target = "tiny-pixel"
"""


@pytest.fixture(scope="module")
def _suite_root(tmp_path_factory):
    """Three models x two seeds, trained and reported once for the whole module."""
    suite = (
        TINY_SUITE.replace(
            'models = ["tiny-none", "tiny-pixel"]',
            'models = ["tiny-none", "tiny-shuffle", "tiny-pixel"]',
        )
        + EXTRA_EVALUATIONS
    )
    root = write_card_root(tmp_path_factory.mktemp("report"), suite.replace("seeds = [0]", "seeds = [0, 1]"))
    with open(root / "models" / "tiny-pixel.toml", "a") as card:  # its target's table comes last
        card.write("heldout = 16\n")  # stimuli the similarity column (and its matrices) are measured on
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BENCH_NO_DOWNLOAD", "1")
        enter(root, mp)
        code, out, err = run_cli("run", "tiny", "--device", "cpu")
    assert code == 0, err
    return root, out


@pytest.fixture
def reported(_suite_root, monkeypatch):
    root, out = _suite_root
    enter(root, monkeypatch)
    return root / "reports" / "tiny", out


def test_main_table_aggregates_seeds_with_sem_and_no_ranks(reported):
    report, out = reported
    md = (report / "leaderboard.md").read_text()
    res = pd.read_csv(report / "results.csv")
    clean = res[res["evaluation"] == "clean"].groupby("model")["value"]
    mean, sem = clean.mean(), clean.std(ddof=1) / 2**0.5
    row = next(line for line in md.splitlines() if line.startswith("| tiny-pixel "))
    assert f"{mean['tiny-pixel'] * 100:.1f} ± {sem['tiny-pixel'] * 100:.1f} |" in row
    assert re.search(r"\|\s+2\s+\|", row)  # two seeds
    header = next(line for line in md.splitlines() if line.startswith("| model "))
    for col in ["clean %", "noise-gaussian AUC %", "noise-saltpepper AUC %", "pgd-linf AUC %", "minimal-l2 median"]:
        assert col in header
    assert "mean rank" not in md and not re.search(r"\(\d\)", row)  # no order of means without uncertainty
    best = md.split("## Probability of being best", 1)[1].split("##", 1)[0]
    rows = [line for line in best.splitlines() if line.startswith("| tiny-")]
    clean_p = [float(line.split("|")[2]) for line in rows]
    assert len(rows) == 3 and sum(clean_p) == pytest.approx(1.0, abs=0.02)


def test_paired_deltas_match_the_per_seed_numbers(reported):
    report, _ = reported
    deltas = pd.read_csv(report / "deltas.csv")
    res = pd.read_csv(report / "results.csv")
    pairs = set(zip(deltas["model"], deltas["reference"]))
    assert pairs == {("tiny-shuffle", "tiny-none"), ("tiny-pixel", "tiny-none"), ("tiny-pixel", "tiny-shuffle")}
    acc = res[res["evaluation"] == "clean"].set_index(["model", "seed"])["value"]
    clean = deltas[
        (deltas["model"] == "tiny-pixel") & (deltas["reference"] == "tiny-none") & (deltas["evaluation"] == "clean")
    ]
    d = clean[clean["scope"] == "training procedure"].iloc[0]
    expected = (acc["tiny-pixel"] - acc["tiny-none"]).mean()
    # two training seeds: the training variance is barely known, so no interval (never one over images alone)
    assert d["delta"] == pytest.approx(expected) and math.isnan(d["ci_low"]) and math.isnan(d["ci_high"])
    assert d["seeds"] == 2 and d["images"] == 48 and "2 seed(s)" in d["reason"] and d["role"] == "exploratory"
    per_seed = clean[clean["scope"] == "these weights"].set_index("seed")
    assert sorted(per_seed.index) == [0, 1]
    for s in (0, 1):  # McNemar per pair of trained weights, its delta that seed's own
        row = per_seed.loc[s]
        assert row["delta"] == pytest.approx(acc["tiny-pixel", s] - acc["tiny-none", s])
        assert 0 <= row["mcnemar_p"] <= 1 and row["seeds"] == 1
    auc = deltas[(deltas["summary"] == "AUC") & (deltas["evaluation"] == "noise-gaussian")]
    assert len(auc) == 3
    ratio = deltas[deltas["summary"] == "log ratio of medians"]
    assert set(ratio["evaluation"]) == {"minimal-l2", "minimal-linf"}
    md = (report / "leaderboard.md").read_text()
    assert "## Paired comparisons (exploratory unless primary)" in md and "| tiny-pixel   | tiny-none" in md.replace(
        "tiny-pixel |", "tiny-pixel   |"
    )


def test_plots_model_cards_and_robustbench_exports(reported):
    report, _ = reported
    for png in ["noise.png", "epsilon.png", "minimal.png", "layer_weights.png"]:
        assert (report / png).read_bytes()[:4] == b"\x89PNG", png
    card = (report / "models" / "tiny-pixel-seed1.md").read_text()
    assert "alpha 10.0 (code convention)" in card and "## Learned layer weights" in card and "stage1" in card
    assert "pixel-threshold" in card and "s of training on cpu" in card and "clean" in card
    assert len(list((report / "models").glob("*.md"))) == 6
    info = json.loads((report / "robustbench" / "tiny-none.json").read_text())
    for field in [
        "link",
        "name",
        "authors",
        "additional_data",
        "number_forward_passes",
        "dataset",
        "venue",
        "architecture",
        "eps",
        "clean_acc",
        "reported",
    ]:
        assert field in info
    assert "autoattack_acc" not in info  # no AutoAttack was run: never filled with PGD numbers
    res = pd.read_csv(report / "results.csv")
    clean = res[(res["model"] == "tiny-none") & (res["evaluation"] == "clean")]["value"].mean()
    assert info["clean_acc"] == f"{clean * 100:.2f}" and info["eps"] == "0.02"


def test_latex_and_markdown_formats(reported):
    code, out, _ = run_cli("report", "tiny", "--format", "latex")
    assert code == 0 and r"\begin{tabular}" in out and r"$\pm$" in out and r"clean \%" in out
    assert (reported[0] / "leaderboard.tex").read_text().count(r"\\") >= 4
    code, out, _ = run_cli("report", "tiny", "--format", "markdown")
    assert code == 0 and out.startswith("# Leaderboard: suite `tiny`")
    code, _, err = run_cli("report", "tiny", "--format", "pdf")
    assert code == 2 and "expected text, markdown or latex" in err


def _chromium(tmp_path, *args: str) -> str:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run installs the Debian package 'chromium'")
        pytest.skip("chromium not installed (apt-get install chromium); CI runs this test")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
    flags += ["--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}"]
    done = subprocess.run(
        [browser, *flags, "--virtual-time-budget=5000", "--enable-logging=stderr", "--v=0", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.stdout, done.stderr


def test_html_page_renders_in_headless_chromium(reported, tmp_path):
    """Every image loads, the page logs no console error, the views are there, a header click
    sorts its table, and a screenshot can be taken (what the README shows for quick)."""
    page = reported[0] / "index.html"
    text = page.read_text()
    assert "http://" not in text and "https://" not in text  # self-contained: no network
    dom, log = _chromium(tmp_path, "--dump-dom", page.as_uri())
    pngs = len(list(page.parent.glob("*.png")))
    assert pngs >= 6 and f'data-images-loaded="{pngs}"' in dom, dom[:500]
    assert int(re.search(r'data-tables="(\d+)"', dom).group(1)) >= 6
    assert "Paired comparisons" in dom and "tiny-shuffle" in dom
    views = ("clean_vs_robust.png", "gallery.png", "noise_examples.png", "corruption_examples.png")
    views += ("similarity_matrices.png", "Worst-class accuracy", "Error consistency")
    for view in views:
        assert view in dom
    assert "forest.png" not in dom  # two seeds give no interval: the forest plot draws none
    console = [line for line in log.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    assert console == [], console  # the page writes nothing to the console: no error, no warning
    sorted_dom, _ = _chromium(tmp_path, "--dump-dom", page.as_uri() + "#check-sort")
    assert 'data-sorted="1"' in sorted_dom
    first = re.search(r'data-first-row="([^"]*)"', sorted_dom).group(1)  # the main table's regularizer column
    assert first == min(pd.read_csv(page.parent / "results.csv")["regularizer"].unique())
    shot = tmp_path / "shot.png"
    _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,900", page.as_uri())
    assert shot.is_file() and shot.stat().st_size > 10_000
