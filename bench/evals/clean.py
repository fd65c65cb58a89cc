"""Clean accuracy: always part of a suite, because every robust number is read against it."""
from __future__ import annotations

from dataclasses import dataclass

from pydantic import ConfigDict

from bench.evals.base import EVALUATIONS, EvalContext, EvalOutput, Evaluation, Metric, predict


@dataclass(frozen=True)
class CleanParams:
    __pydantic_config__ = ConfigDict(extra="forbid")


@EVALUATIONS.register("clean")
class Clean(Evaluation):
    Params = CleanParams
    kind = "clean"

    def run(self, model, x, y, ctx: EvalContext) -> EvalOutput:
        correct = (predict(model, x, ctx) == y).float()
        ctx.progress.advance(len(y))
        return EvalOutput([Metric("clean", None, "accuracy", correct.double().mean().item())], [("clean", None, correct)])
