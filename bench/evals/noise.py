"""Noise robustness with the paper's semantics (method.md §6): noise added in [0,1] pixel space,
then each image clamped to its OWN original [min, max]. Not Foolbox's noise attacks, whose
epsilon is an L2 norm and whose 'repeated' variants report the worst of N draws."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import torch
from pydantic import ConfigDict, Field

from bench.evals.base import CurveEvaluation, EvalContext, EvalOutput, Metric, predict
from bench.evals.image_rng import ImageRNG
from bench.evals.reporting import Curve, MetricId, ReportSpec, Summary

NoiseKind = Literal["gaussian", "uniform", "saltpepper"]


def add_noise(x: torch.Tensor, kind: NoiseKind, level: float, rng: ImageRNG) -> torch.Tensor:
    """gaussian: x + level*N(0,1); uniform: x + U(-level, level); saltpepper: each pixel set to
    the image's max or min with probability ``level``. Then the per-image clamp. Each image
    draws from its own generator (common random numbers across models)."""
    lo = x.amin(dim=(1, 2, 3), keepdim=True)
    hi = x.amax(dim=(1, 2, 3), keepdim=True)
    shape = x.shape[1:]
    if kind == "gaussian":
        noisy = x + level * rng.randn(*shape)
    elif kind == "uniform":
        noisy = x + level * rng.uniform(-1, 1, *shape)
    else:  # +-1 then the clamp sends a flipped pixel to the image's own max or min
        flip = rng.rand(*shape) < level
        sign = 2 * rng.randint(0, 2, *shape) - 1
        noisy = x + flip * sign
    return torch.clamp(noisy, lo, hi)


def top_class_share(pred: torch.Tensor) -> float:
    """The fraction of predictions on the most predicted class."""
    return float(torch.bincount(pred).max()) / len(pred) if len(pred) else float("nan")


@dataclass(frozen=True)
class NoiseParams:
    __pydantic_config__ = ConfigDict(extra="forbid")
    noise: NoiseKind
    # a standard deviation, a half-width or a probability, in [0,1] pixel units
    levels: Annotated[tuple[Annotated[float, Field(ge=0, le=1)], ...], Field(min_length=1, max_length=1000)]
    # a main-table column: the share of the most predicted class at the largest level (collapse
    # of the predictions onto a few classes under strong noise)
    report_collapse: bool = False


class Noise(CurveEvaluation):
    Params = NoiseParams
    grid = "levels"
    monotone = False  # noise may fix an image's clean error by chance
    version = 4  # 4: top-class share per level (3: common random numbers, one generator per image)

    @property
    def metric(self) -> MetricId:
        return MetricId(f"noise-{self.params.noise}")

    @property
    def stream(self) -> str:
        return self.metric.name

    def report(self) -> ReportSpec:
        curve = Curve(
            self.metric,
            f"{self.params.noise} noise level ([0,1] scale)",
            "noise",
            "accuracy vs noise (per-image clamp), mean ± SEM over seeds",
            headline=True,
            monotone=False,
        )
        collapse = Summary(
            f"{self.metric.name} top class",
            self.metric,
            "top class share",
            "",
            "none",
            ranked=False,
            note=f"share of predictions on the most predicted class at {self.metric.name} level "
            f"{max(self.params.levels):g} (0.1 for balanced predictions of 10 classes; above 0.5: "
            "collapsed onto few classes)",
        )
        return ReportSpec(curves=(curve,), summaries=(collapse,) if self.params.report_collapse else ())

    def work(self, n_images: int) -> int:
        return n_images * len(self.params.levels)

    def notes(self):
        return {"semantics": "noise in [0,1] space, each image clamped to its own [min, max]"}

    def at(self, level, state, model, x, y, ctx: EvalContext):
        rng = ImageRNG.for_images(self.point_seed(ctx, level), ctx.image_ids(x))
        pred = predict(model, add_noise(x.cpu(), self.params.noise, level, rng), ctx)
        ctx.progress.advance(len(y))
        return pred == y, [Metric(self.metric, level, "top class share", top_class_share(pred))]

    def finish(self, state, model, x, y, ctx: EvalContext, out: EvalOutput) -> None:
        top = max(self.params.levels)
        share = next(m.value for m in out.metrics if m.param == top and m.statistic == "top class share")
        out.metrics.append(Metric(self.metric, None, "top class share", share))
