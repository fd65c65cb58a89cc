"""bench selftest's CPU dry run: the phases run, a failing phase is recorded and the others still
run, and the summary says which failed."""

from __future__ import annotations

import json

from conftest import run_cli

import bench.selftest as selftest


def test_the_cpu_dry_run_passes_its_numerics_and_determinism_phases(tmp_path):
    out = tmp_path / "selftest.json"
    args = ["selftest", "--device", "cpu", "--scale", "0.05", "--out", str(out)]
    code, stdout, err = run_cli(*args, "--phase", "environment", "--phase", "numerics", "--phase", "determinism")
    assert code == 0, stdout + err
    phases = {p["name"]: p for p in json.loads(out.read_text())}
    assert [p["status"] for p in phases.values()] == ["ok", "ok", "ok"]
    numerics = phases["numerics"]["figures"]
    assert numerics["logits_fp32_rel"] == 0 and numerics["argmax_fp32_agreement"] == 1  # CPU against itself
    # ... and bf16 really is another computation: the comparison is not of a tensor with itself
    assert numerics["logits_bf16_rel"] > 0 and numerics["input_grad_bf16_rel"] > 0
    hashes = phases["determinism"]["figures"]["weights_hashes"]
    assert len(hashes) == 2 and hashes[0] == hashes[1]


def test_a_failing_phase_is_recorded_and_the_run_goes_on(tmp_path, monkeypatch):
    def broken(ctx, phase):
        raise RuntimeError("no such kernel")

    def drifting(ctx, phase):
        phase.figures["weights_hashes"] = ["a", "b"]
        phase.status = "fail"

    monkeypatch.setitem(selftest.PHASES, "environment", (broken, 1, False))
    monkeypatch.setitem(selftest.PHASES, "determinism", (drifting, 1, False))
    out = tmp_path / "s.json"
    code, stdout, err = run_cli(
        "selftest", "--device", "cpu", "--out", str(out), "--phase", "environment", "--phase", "determinism"
    )
    assert code == 1
    phases = json.loads(out.read_text())
    assert [(p["name"], p["status"]) for p in phases] == [("environment", "error"), ("determinism", "fail")]
    assert "no such kernel" in phases[0]["notes"][0]
    assert run_cli("selftest", "--phase", "nonsense")[0] == 2


def test_the_perf_figures_are_read_against_the_goals_at_the_better_of_eager_and_compiled():
    figures = {
        "train_baseline_40_epochs_s": 80.0,
        "train_baseline_compiled_40_epochs_s": 45.0,
        "train_neural_40_epochs_s": 170.0,  # its compiled figure missing: the eager one counts
        "paper_table1_evaluation_min_per_model_upper_estimate": 12.34,
    }
    assert selftest.goal_notes(figures) == [
        "baseline: 40 epochs in about 45 s at the best step rate (goal <= 60 s)",
        "neural: 40 epochs in about 170 s at the best step rate (goal <= 150 s)",
        "paper-table1 evaluation: at most 12.3 min per model (goal <= 5)",
    ]
