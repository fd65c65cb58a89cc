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
from bench.evals.attacks import Epsilons, MaxImages, Norm, check_epsilons, foolbox
from bench.evals.base import CurveEvaluation, EvalContext, SourceModels, predict
from bench.evals.pgd import CLEAN_ERRORS, attack_at, pgd_attack
from bench.evals.reporting import Curve, MetricId, ReportSpec


@dataclass(frozen=True)
class TransferParams:
    __pydantic_config__ = ConfigDict(extra="forbid")
    source: str  # a model card of the same suite
    norm: Norm
    epsilons: Epsilons
    steps: Annotated[int, Field(ge=1, le=100_000)] = 20
    rel_stepsize: Annotated[float, Field(gt=0, le=100)] = 0.1
    random_start: bool = True
    max_images: MaxImages = 0

    def __post_init__(self):
        check_epsilons(self.norm, self.epsilons)


class Transfer(CurveEvaluation):
    Params = TransferParams
    grid = "epsilons"
    # a transfer attack may by chance fix some of the target's clean errors, so accuracy above
    # clean or rising with epsilon is no fault here; beating white-box PGD is (checked in reports)
    monotone = False
    version = 2  # 2: random starts common to all training seeds
    needs = frozenset({"source_models"})

    @property
    def metric(self) -> MetricId:
        return MetricId(f"transfer-{self.params.norm}", self.params.source)  # one curve per source model

    @property
    def stream(self) -> str:
        return self.metric.name

    def sources(self) -> tuple[str, ...]:
        return (self.params.source,)

    def report(self) -> ReportSpec:
        p = self.params
        return ReportSpec(
            curves=(
                Curve(
                    self.metric,
                    f"{p.norm}:{p.source} epsilon ([0,1] scale)",
                    "transfer",
                    "transfer attack robust accuracy (clean errors count), mean ± SEM over seeds",
                    headline=True,
                    monotone=False,
                    whitebox=MetricId(f"pgd-{p.norm}"),
                ),
            )
        )

    def work(self, n_images: int) -> int:
        return n_images * len(self.params.epsilons) * 2  # crafting (unless cached) and evaluation

    def crafted(self, x: torch.Tensor, y: torch.Tensor, eps: float, ctx: EvalContext) -> torch.Tensor:
        p, sources = self.params, ctx.resource("source_models")
        sources: SourceModels
        identity = {k: v for k, v in as_dict(p).items() if k not in ("epsilons", "max_images")}
        images = hashlib.sha256(x.contiguous().numpy().tobytes()).hexdigest()[:16]
        key = ("transfer", sources.training_seed, images, repr(identity), eps)
        if key not in sources.cache:
            fmodel = foolbox().PyTorchModel(sources.load(p.source), bounds=(0, 1), device=ctx.device)
            sources.cache[key] = attack_at(
                pgd_attack(p.norm, p.steps, p.rel_stepsize, p.random_start),
                fmodel,
                x,
                y,
                eps,
                p.norm,
                self.point_seed(ctx, eps),
                ctx,
                self.metric.label,
            )
        else:
            ctx.progress.advance(len(y))
        return sources.cache[key]

    def notes(self):
        p = self.params
        return {
            "attack": f"foolbox PGD on source model {p.source} (same training seed), {p.steps} steps",
            "semantics": CLEAN_ERRORS,
        }

    def at(self, eps, state, model, x, y, ctx: EvalContext):
        correct = predict(model, self.crafted(x, y, eps, ctx), ctx) == y
        ctx.progress.advance(len(y))
        return correct
