"""Transfer attacks: adversarial examples crafted with Foolbox PGD on a source model of the
suite (same training seed) and shown to the evaluated model. Robust accuracy per epsilon.

The crafted images depend only on the source model, the seed and the parameters, never on the
target, so one crafting serves every target of a run (kept in the run's cache)."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Annotated

import torch
from pydantic import ConfigDict, Field

from bench.config import as_dict
from bench.evals import sanity
from bench.evals.adversarial import CLEAN_ERRORS, attack_at, pgd_attack
from bench.evals.attacks import Norm, foolbox
from bench.evals.base import EVALUATIONS, EvalContext, EvalOutput, Evaluation, Metric, predict, sub_seed


@dataclass(frozen=True)
class TransferParams:
    __pydantic_config__ = ConfigDict(extra="forbid")
    source: str  # a model card of the same suite
    norm: Norm
    epsilons: tuple[Annotated[float, Field(ge=0)], ...]
    steps: Annotated[int, Field(ge=1)] = 20
    rel_stepsize: Annotated[float, Field(gt=0)] = 0.1
    random_start: bool = True
    max_images: Annotated[int, Field(ge=0)] = 0


@EVALUATIONS.register("transfer")
class Transfer(Evaluation):
    Params = TransferParams
    kind = "transfer"
    grid = "epsilons"

    def sources(self) -> tuple[str, ...]:
        return (self.params.source,)

    def work(self, n_images: int) -> int:
        return n_images * len(self.params.epsilons) * 2  # crafting (unless cached) and evaluation

    def crafted(self, x: torch.Tensor, y: torch.Tensor, eps: float, ctx: EvalContext) -> torch.Tensor:
        p = self.params
        identity = {k: v for k, v in as_dict(p).items() if k not in ("epsilons", "max_images")}
        images = hashlib.sha256(x.contiguous().numpy().tobytes()).hexdigest()[:16]
        key = ("transfer", ctx.training_seed, images, repr(identity), eps)
        if key not in ctx.cache:
            source = ctx.models(p.source)
            fmodel = foolbox().PyTorchModel(source, bounds=(0, 1), device=ctx.device)
            seed = sub_seed(ctx.training_seed, "transfer", identity, eps)  # not the target's cell seed
            ctx.cache[key] = attack_at(pgd_attack(p.norm, p.steps, p.rel_stepsize, p.random_start), fmodel, x, y, eps,
                                       p.norm, seed, ctx, f"transfer-{p.norm}:{p.source}")
        else:
            ctx.progress.advance(len(y))
        return ctx.cache[key]

    def run(self, model, x, y, ctx: EvalContext) -> EvalOutput:
        p = self.params
        name = f"transfer-{p.norm}:{p.source}"  # one curve per source model
        out = EvalOutput(notes={"attack": f"foolbox PGD on source model {p.source} (same training seed), "
                                          f"{p.steps} steps", "semantics": CLEAN_ERRORS})
        points = []
        for eps in p.epsilons:
            robust = (predict(model, self.crafted(x, y, eps, ctx), ctx) == y).float()
            ctx.progress.advance(len(y))
            points.append((eps, robust.double().mean().item()))
            out.metrics.append(Metric(name, eps, "accuracy", points[-1][1]))
            out.examples.append((name, eps, robust))
        clean = (predict(model, x, ctx) == y).double().mean().item()
        # a transfer attack may by chance fix some of the target's clean errors, so accuracy above
        # clean or rising with epsilon is no fault here; beating white-box PGD is (checked in reports)
        out.flags += sanity.accuracy_curve_flags(name, points, clean, monotone=False)
        return out

