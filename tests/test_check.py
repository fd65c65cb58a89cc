"""bench check: a committed reference catches silent changes of the numbers."""
import json
import math

import pandas as pd
import pytest
import torch

import bench.evals.noise as noise_module
from bench.cards import load_suite_card
from bench.check import compare
from conftest import run_cli

pytestmark = pytest.mark.slow


def test_update_then_check_passes_and_a_changed_noise_clamp_fails(cards, monkeypatch):
    ref = cards / "reports" / "tiny" / "reference.json"
    code, out, err = run_cli("check", "tiny", "--against", str(ref), "--update", "--device", "cpu")
    assert code == 0 and "wrote" in out, err
    doc = json.loads(ref.read_text())
    assert doc["suite"] == "tiny" and len(doc["numbers"]) > 20 and "torch" in doc["packages"]

    code, out, _ = run_cli("check", "tiny", "--against", str(ref), "--no-run")
    assert code == 0 and "0 regressions" in out

    # the same models re-evaluated into a fresh store with the clamp dropped from Gaussian noise
    # (a [0,1] clamp would hardly differ here: 93% of Fashion-MNIST images span the full range)
    original = noise_module.add_noise

    def unclamped(x, kind, level, gen):
        if kind == "gaussian":
            return x + level * torch.randn(x.shape, generator=gen)
        return original(x, kind, level, gen)

    monkeypatch.setattr(noise_module, "add_noise", unclamped)
    code, out, _ = run_cli("check", "tiny", "--against", str(ref), "--store", str(cards / "other.sqlite"), "--device", "cpu")
    assert code == 1
    assert "REGRESSION" in out and "noise-gaussian" in out
    assert "clean" not in [line.split()[2] for line in out.splitlines() if "REGRESSION" in line]


def test_reference_errors_exit_2(cards):
    code, _, err = run_cli("check", "tiny", "--against", str(cards / "none.json"), "--no-run")
    assert code == 2 and "--update" in err
    (cards / "bad.json").write_text(json.dumps({"format": "neuroreg-bench/reference", "suite": "tiny", "suite_version": 9, "numbers": []}))
    code, _, err = run_cli("check", "tiny", "--against", str(cards / "bad.json"), "--no-run")
    assert code == 2 and "tiny v9" in err


def test_compare_statuses(cards):
    suite = load_suite_card("tiny")
    base = {"model": "m", "seed": 0, "evaluation": "clean", "param": None, "statistic": "accuracy"}
    ref = [{**base, "value": 0.5}, {**base, "evaluation": "minimal-l2", "statistic": "median", "value": math.inf},
           {**base, "evaluation": "gone", "value": 0.1}]
    cur = pd.DataFrame([{**base, "value": 0.52}, {**base, "evaluation": "minimal-l2", "statistic": "median", "value": math.inf},
                        {**base, "evaluation": "new", "value": 0.3}])
    status = {c.evaluation: (c.status, c.delta) for c in compare(ref, cur, suite)}
    assert status["clean"][0] == "REGRESSION" and status["clean"][1] == pytest.approx(0.02)
    assert status["minimal-l2"] == ("ok", 0.0)  # inf == inf
    assert status["gone"][0] == "MISSING" and status["new"][0] == "NEW"
