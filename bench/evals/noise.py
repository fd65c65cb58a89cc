"""Noise robustness with the paper's semantics (method.md §6): noise added in [0,1] pixel space,
then each image clamped to its OWN original [min, max]. Not Foolbox's noise attacks, whose
epsilon is an L2 norm and whose 'repeated' variants report the worst of N draws."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import torch
from pydantic import ConfigDict, Field

from bench.evals import sanity
from bench.evals.base import EVALUATIONS, EvalContext, EvalOutput, Evaluation, Metric, predict

NoiseKind = Literal["gaussian", "uniform", "saltpepper"]


def add_noise(x: torch.Tensor, kind: NoiseKind, level: float, gen: torch.Generator) -> torch.Tensor:
    """gaussian: x + level*N(0,1); uniform: x + U(-level, level); saltpepper: each pixel set to
    the image's max or min with probability ``level``. Then the per-image clamp."""
    lo = x.amin(dim=(1, 2, 3), keepdim=True)
    hi = x.amax(dim=(1, 2, 3), keepdim=True)
    if kind == "gaussian":
        noisy = x + level * torch.randn(x.shape, generator=gen)
    elif kind == "uniform":
        noisy = x + level * (2 * torch.rand(x.shape, generator=gen) - 1)
    else:  # +-1 then the clamp sends a flipped pixel to the image's own max or min
        flip = torch.rand(x.shape, generator=gen) < level
        sign = 2 * torch.randint(0, 2, x.shape, generator=gen) - 1
        noisy = x + flip * sign
    return torch.clamp(noisy, lo, hi)


@dataclass(frozen=True)
class NoiseParams:
    __pydantic_config__ = ConfigDict(extra="forbid")
    noise: NoiseKind
    levels: tuple[Annotated[float, Field(ge=0)], ...]


@EVALUATIONS.register("noise")
class Noise(Evaluation):
    Params = NoiseParams
    kind = "noise"
    grid = "levels"
    version = 2  # 2: sanity flags stored (numbers of 1 unchanged)

    def work(self, n_images: int) -> int:
        return n_images * len(self.params.levels)

    def run(self, model, x, y, ctx: EvalContext) -> EvalOutput:
        p: NoiseParams = self.params
        name = f"noise-{p.noise}"
        out = EvalOutput(notes={"semantics": "noise in [0,1] space, each image clamped to its own [min, max]"})
        for level in p.levels:
            gen = torch.Generator().manual_seed(self.point_seed(ctx, level))
            correct = (predict(model, add_noise(x.cpu(), p.noise, level, gen), ctx) == y).float()
            out.metrics.append(Metric(name, level, "accuracy", correct.double().mean().item()))
            out.examples.append((name, level, correct))
            ctx.progress.advance(len(y))
        clean = (predict(model, x, ctx) == y).double().mean().item()
        points = [(m.param, m.value) for m in out.metrics]
        out.flags += sanity.accuracy_curve_flags(name, points, clean, monotone=False)
        return out
