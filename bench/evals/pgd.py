"""Robust accuracy under Foolbox 3 PGD at fixed epsilons (method.md §6).

Success is recomputed from the model's own prediction on the returned images and the true
distance, never taken from the attack's flag. Foolbox counts clean errors as successes, and
so do we: robust accuracy at any epsilon already includes clean errors."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Annotated

import torch
from pydantic import ConfigDict, Field

from bench.evals import sanity
from bench.evals.attacks import Epsilon, Epsilons, MaxImages, Norm, check_epsilons, distances, foolbox
from bench.evals.base import EpsilonCurveEvaluation, EvalContext, EvalOutput, Metric, forked_rng, predict

CLEAN_ERRORS = "clean errors count as failures (Foolbox semantics): robust accuracy <= clean accuracy"


def _batches(n: int, size: int):
    for s in range(0, n, size):
        yield slice(s, min(s + size, n))


@dataclass(frozen=True)
class PGDParams:
    __pydantic_config__ = ConfigDict(extra="forbid")
    norm: Norm
    epsilons: Epsilons
    steps: Annotated[int, Field(ge=1, le=100_000)] = 20
    rel_stepsize: Annotated[float, Field(gt=0, le=100)] = 0.1  # step = rel_stepsize * epsilon
    random_start: bool = True
    max_images: MaxImages = 0  # 0: the suite's whole subset
    # an extra probe where accuracy must reach ~0 (any image can be turned grey): None = 0.5 in
    # L-inf, half the box diagonal in L2; 0 = no probe
    sanity_epsilon: Epsilon | None = None
    sanity_limit: Annotated[float, Field(ge=0, le=1)] = 0.05

    def __post_init__(self):
        check_epsilons(self.norm, self.epsilons + ((self.sanity_epsilon,) if self.sanity_epsilon else ()))


def sanity_epsilon(value: float | None, norm: Norm, x: torch.Tensor) -> float:
    if value is not None:
        return value
    return 0.5 if norm == "linf" else 0.5 * float(x[0].numel()) ** 0.5


def pgd_attack(norm: Norm, steps: int, rel_stepsize: float, random_start: bool):
    fb = foolbox()
    cls = fb.attacks.LinfPGD if norm == "linf" else fb.attacks.L2PGD
    return cls(steps=steps, rel_stepsize=rel_stepsize, random_start=random_start)


def attack_at(
    attack, fmodel, x: torch.Tensor, y: torch.Tensor, eps: float, norm: Norm, seed: int, ctx: EvalContext, name: str
) -> torch.Tensor:
    """Adversarials at one epsilon, batch by batch, checked to lie within it. Foolbox takes no
    seed: its random start draws from torch's global RNG, so a forked copy is seeded and the
    caller's RNG stays untouched."""
    if eps == 0:  # the only image within epsilon 0 is the image itself
        ctx.progress.advance(len(y))
        return x.cpu().clone()
    advs = []
    with forked_rng(ctx, seed):
        for sl in _batches(len(y), ctx.batch_size):
            xb, yb = x[sl].to(ctx.device), y[sl].to(ctx.device)
            _, clipped, _ = attack(fmodel, xb, yb, epsilons=[eps])
            adv = clipped[0].detach()
            if not bool((distances(xb, adv, norm) <= eps * (1 + 1e-5) + 1e-7).all()):
                raise RuntimeError(f"{name}: attack returned images outside epsilon {eps}")
            advs.append(adv.cpu())
            ctx.progress.advance(len(yb))
    return torch.cat(advs)


class PGD(EpsilonCurveEvaluation):
    Params = PGDParams
    version = 3  # 3: random starts common to all models (2: sanity flags and the large-epsilon probe)
    metric_prefix, plot, robustbench_linf = "pgd", "epsilon", ("eps",)
    title = "PGD robust accuracy (clean errors count), mean ± SEM over seeds"

    def work(self, n_images: int) -> int:
        return n_images * (len(self.params.epsilons) + (self.params.sanity_epsilon != 0))

    def attack_iterations(self) -> dict[str, int]:
        """Epsilon 0 costs nothing (its answer is the image); the sanity probe is one more epsilon."""
        p = self.params
        return {"pgd": (sum(e > 0 for e in p.epsilons) + (p.sanity_epsilon != 0)) * p.steps}

    def notes(self):
        return {"attack": f"foolbox {type(self._attack()).__name__}", "semantics": CLEAN_ERRORS}

    def _attack(self):
        p = self.params
        return pgd_attack(p.norm, p.steps, p.rel_stepsize, p.random_start)

    @contextlib.contextmanager
    def session(self, model, x, y, ctx: EvalContext):
        yield self._attack(), foolbox().PyTorchModel(model, bounds=(0, 1), device=ctx.device)

    def at(self, eps, state, model, x, y, ctx: EvalContext):
        attack, fmodel = state
        adv = attack_at(attack, fmodel, x, y, eps, self.params.norm, self.point_seed(ctx, eps), ctx, self.metric.label)
        return predict(model, adv, ctx) == y

    def finish(self, state, model, x, y, ctx: EvalContext, out: EvalOutput) -> None:
        """The large-epsilon probe: accuracy near zero there, else gradient masking is suspected."""
        (attack, fmodel), p, name = state, self.params, self.metric.label
        big = sanity_epsilon(p.sanity_epsilon, p.norm, x)
        if big > 0:
            adv = attack_at(attack, fmodel, x, y, big, p.norm, self.point_seed(ctx, ("sanity", big)), ctx, name)
            acc = (predict(model, adv, ctx) == y).double().mean().item()
            out.metrics.append(Metric(self.metric, big, "sanity probe accuracy", acc))
            out.flags += sanity.near_zero_flag(name, big, acc, p.sanity_limit)
