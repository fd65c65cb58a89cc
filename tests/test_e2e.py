"""A tiny suite through the real CLI: train, evaluate, store, report, re-run, export."""

import sqlite3
import subprocess
import sys

import pandas as pd
import pytest
import torch
from conftest import run_cli

import bench

pytestmark = pytest.mark.slow


def test_tiny_suite_end_to_end_through_the_cli(cards):
    code, out, err = run_cli("run", "tiny", "--device", "cpu")
    assert code == 0, err
    assert "trained tiny-none/seed0, tiny-pixel/seed0; evaluated 10 cells, 0 already in the store" in out
    report = cards / "reports" / "tiny"
    board = (report / "leaderboard.md").read_text()
    assert "| tiny-none" in board and "| tiny-pixel" in board and "pixel-threshold" in board
    assert "clean errors count as failures" in board and "## Sanity flags" in board
    assert "Learned layer weights" in board
    assert (report / "noise.png").read_bytes()[:4] == b"\x89PNG"
    csv = pd.read_csv(report / "results.csv")
    for col in [
        "model",
        "regularizer",
        "arch",
        "seed",
        "dataset",
        "suite",
        "suite_version",
        "evaluation",
        "param",
        "value",
    ]:
        assert col in csv.columns
    assert set(csv["evaluation"]) == {
        "clean",
        "noise-gaussian",
        "noise-saltpepper",
        "pgd-linf",
        "minimal-l2",
        "minimal-linf",
        "ensemble-l2",
        "ensemble-linf",
    }
    acc = csv[(csv["statistic"] == "accuracy")]["value"]
    assert acc.between(0, 1).all()
    clean = csv[csv["evaluation"] == "clean"].set_index("model")["value"]
    pgd = csv[csv["evaluation"] == "pgd-linf"]
    for model, g in pgd.groupby("model"):
        assert (g["value"] <= clean[model] + 1e-12).all()  # clean errors count as failures

    # every per-example outcome is in the store, with provenance
    db = sqlite3.connect(cards / ".bench" / "results.sqlite")
    n = db.execute(
        "SELECT COUNT(*) FROM examples e JOIN cells c ON e.key = c.key WHERE c.evaluation='noise'"
    ).fetchone()[0]
    assert n == 2 * 48 * (3 + 2)
    row = db.execute("SELECT subset_hash, checkpoint_hash, packages, device FROM cells LIMIT 1").fetchone()
    assert all(row) and "torch" in row[2] and row[3].startswith("cpu")

    # re-running a finished suite does no work and gives the same numbers
    first = (report / "results.csv").read_bytes()
    code, out, _ = run_cli("run", "tiny", "--device", "cpu")
    assert code == 0 and "trained none; evaluated 0 cells, 10 already in the store" in out
    assert (report / "results.csv").read_bytes() == first
    code, out, _ = run_cli("report", "tiny")
    assert code == 0 and "tiny-pixel" in out and (report / "results.csv").read_bytes() == first

    # export, then load in a fresh process-independent way
    code, _, err = run_cli("zoo", "export", "tiny-pixel", "--to", str(cards / "exported.pt"))
    assert code == 0, err
    model = bench.load_model(cards / "exported.pt")
    logits = model(torch.rand(2, 1, 28, 28))
    assert logits.shape == (2, 10) and not model.training


def test_adding_an_evaluation_keeps_finished_cells_and_their_numbers(cards):
    suite = cards / "suites" / "tiny.toml"
    text = suite.read_text()
    suite.write_text(text.split("[[evaluations]]")[0] + "[[evaluations]]" + text.split("[[evaluations]]")[1])
    assert run_cli("run", "tiny", "--device", "cpu")[0] == 0
    before = pd.read_csv(cards / "reports" / "tiny" / "results.csv")
    suite.write_text(text)  # all four evaluations again
    code, out, _ = run_cli("run", "tiny", "--device", "cpu")
    assert code == 0 and "evaluated 6 cells, 4 already in the store" in out
    after = pd.read_csv(cards / "reports" / "tiny" / "results.csv")
    merged = before.merge(after, on=["model", "seed", "evaluation", "param", "statistic"], suffixes=("_a", "_b"))
    assert len(merged) == len(before) and (merged["value_a"] == merged["value_b"]).all()


def test_bench_console_script_runs_as_a_subprocess(cards):
    proc = subprocess.run([sys.executable, "-m", "bench", "run", "nope"], capture_output=True, text=True, cwd=cards)
    assert proc.returncode == 2 and proc.stderr.startswith("error: unknown suite 'nope'")


def test_a_new_evaluation_version_recomputes_only_its_cells(cards, monkeypatch):
    from bench.evals.minimal import Minimal

    assert run_cli("run", "tiny", "--device", "cpu")[0] == 0
    monkeypatch.setattr(Minimal, "version", Minimal.version + 1)
    code, out, _ = run_cli("run", "tiny", "--device", "cpu")
    assert code == 0 and "trained none; evaluated 2 cells, 8 already in the store" in out
