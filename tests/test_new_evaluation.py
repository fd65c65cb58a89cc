"""A new evaluation is one class: a Gaussian-blur sweep defined here, registered with one line,
appears in the leaderboard, the paired comparisons, the plots and the RobustBench export, with
no change to bench/report/ (which names no evaluation)."""

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import TINY_SUITE, run_cli
from pydantic import ConfigDict
from torchvision.transforms.v2 import functional as TF

from bench.evals import EVALUATIONS
from bench.evals.base import EvalContext, EvalOutput, Evaluation, predict
from bench.evals.reporting import Curve, MetricId, ReportSpec

BLUR = MetricId("blur")


@dataclass(frozen=True)
class BlurParams:
    __pydantic_config__ = ConfigDict(extra="forbid")
    sigmas: tuple[float, ...]


class BlurSweep(Evaluation):
    Params = BlurParams
    kind = "blur"
    grid = "sigmas"

    def report(self) -> ReportSpec:
        return ReportSpec(
            curves=(Curve(BLUR, "blur sigma (pixels)", "blur", "accuracy vs Gaussian blur", headline=True),)
        )

    def run(self, model, x, y, ctx: EvalContext) -> EvalOutput:
        out = EvalOutput()
        for sigma in self.params.sigmas:
            blurred = x if sigma == 0 else TF.gaussian_blur(x, kernel_size=9, sigma=sigma)
            out.accuracy(BLUR, sigma, predict(model, blurred, ctx) == y)
        return out


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setitem(EVALUATIONS._entries, "blur", BlurSweep)  # what '@EVALUATIONS.register("blur")' does


@pytest.mark.slow
def test_a_blur_sweep_defined_outside_the_package_is_reported_everywhere(cards, registered):
    suite = cards / "suites" / "tiny.toml"
    suite.write_text(
        TINY_SUITE.replace("seeds = [0]", "seeds = [0, 1, 2]").split("[[evaluations]]")[0]
        + '[[evaluations]]\nkind = "blur"\nsigmas = [0.0, 1.0, 2.0]\n'
    )
    code, out, err = run_cli("run", "tiny", "--device", "cpu")
    assert code == 0, err
    report = cards / "reports" / "tiny"
    board = (report / "leaderboard.md").read_text()
    assert "blur AUC %" in board  # a main-table column
    compared = board.split("## Paired comparisons")[1].split("## Sanity flags")[0]
    blur_rows = [row for row in compared.splitlines() if "| blur AUC |" in row]
    assert len(blur_rows) == 1 and "[" in blur_rows[0] and "(t, df 2)" in blur_rows[0]  # compared, with an interval
    assert (report / "blur.png").read_bytes()[:4] == b"\x89PNG" and "![blur.png](blur.png)" in board
    info = json.loads((report / "robustbench" / "tiny-none.json").read_text())
    assert set(info["neuroreg_bench"]["blur_acc"]) == {"0", "1", "2"}
    deltas = (report / "deltas.csv").read_text()
    assert "blur" in deltas
    report_code = "".join(p.read_text() for p in Path(__file__).parents[1].joinpath("bench", "report").glob("*.py"))
    assert "blur" not in report_code
