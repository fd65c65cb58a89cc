"""Clean accuracy: always part of a suite, because every robust number is read against it."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ConfigDict

from bench.evals.base import EvalContext, EvalOutput, Evaluation
from bench.evals.reporting import MetricId, ReportSpec, Summary

CLEAN = MetricId("clean")


@dataclass(frozen=True)
class CleanParams:
    __pydantic_config__ = ConfigDict(extra="forbid")


class Clean(Evaluation):
    Params = CleanParams

    def report(self) -> ReportSpec:
        return ReportSpec(
            summaries=(Summary("clean", CLEAN, "accuracy", "accuracy", "mcnemar", robustbench="clean_acc"),)
        )

    def run(self, model, x, y, ctx: EvalContext) -> EvalOutput:
        out = EvalOutput()
        out.accuracy(CLEAN, None, ctx.clean_correct(model, x, y))
        ctx.progress.advance(len(y))
        return out
