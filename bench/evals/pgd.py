"""Robust accuracy under Foolbox 3 PGD at fixed epsilons (method.md §6).

Success is recomputed from the model's own prediction on the returned images and the true
distance, never taken from the attack's flag. Foolbox counts clean errors as successes, and
so do we: robust accuracy at any epsilon already includes clean errors."""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
from typing import Annotated, Literal

import torch
from pydantic import ConfigDict, Field

from bench.config import ADDED
from bench.evals import sanity
from bench.evals.attacks import Epsilon, Epsilons, MaxImages, Norm, check_epsilons, distances, foolbox
from bench.evals.base import EpsilonCurveEvaluation, EvalContext, EvalOutput, Metric, forked_rng, predict
from bench.evals.image_rng import ImageRNG
from bench.evals.reporting import MetricId

CLEAN_ERRORS = "clean errors count as failures (Foolbox semantics): robust accuracy <= clean accuracy"
TARGETS = {
    "random": "targeted: each image towards another class drawn from its own generator (the same for every model)",
    "least-likely": "targeted: each image towards the class of the model's lowest clean logit",
}


NESTED = (
    "nested: each epsilon attacks only the images no smaller one broke (an adversarial within a smaller "
    "ball counts at every larger one); per-image random starts"
)


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
    # independent: every image attacked at every epsilon, random starts from one seeded draw per
    # batch (as Foolbox draws them). nested: an epsilon attacks only the images no smaller one
    # broke (an adversarial within a smaller ball lies within every larger one, so it counts there
    # too), each image's random start from its own generator; the same or lower robust accuracy
    # at a fraction of the attacks, monotone by construction
    schedule: Literal["independent", "nested"] = "independent"
    # convergence: the whole curve again at these fractions of the steps (same schedule, same random
    # starts); an epsilon whose accuracy there is more than converged_within (absolute) above the
    # full budget's says the attack was still gaining: flagged not converged. () skips the check
    budget_fractions: tuple[Annotated[float, Field(gt=0, lt=1)], ...] = ()
    converged_within: Annotated[float, Field(gt=0, le=1)] = 0.02
    # targeted: every image is pushed towards a stated class, and accuracy is still "predicts its
    # label". random: another class drawn from the image's own generator (the same for every
    # model); least-likely: the class of the model's lowest clean logit (Kurakin et al. 2017)
    target: Literal["none", "random", "least-likely"] = field(default="none", metadata=ADDED)

    def __post_init__(self):
        check_epsilons(self.norm, self.epsilons + ((self.sanity_epsilon,) if self.sanity_epsilon else ()))
        if self.schedule == "nested" and list(self.epsilons) != sorted(self.epsilons):
            raise ValueError("schedule 'nested' attacks the epsilons in increasing order: list them so")


def sanity_epsilon(value: float | None, norm: Norm, x: torch.Tensor) -> float:
    if value is not None:
        return value
    return 0.5 if norm == "linf" else 0.5 * float(x[0].numel()) ** 0.5


def pgd_attack(norm: Norm, steps: int, rel_stepsize: float, random_start: bool, per_image_starts: bool = False):
    fb = foolbox()
    cls = fb.attacks.LinfPGD if norm == "linf" else fb.attacks.L2PGD
    if per_image_starts:
        cls = type(cls.__name__, (PerImageStart, cls), {"norm": norm})
    return cls(steps=steps, rel_stepsize=rel_stepsize, random_start=random_start)


class PerImageStart:
    """A Foolbox PGD whose random start for each image comes from that image's own generator
    (``starts``, set per batch): an image's start then does not depend on which other images are
    attacked with it, so attacking only some of them leaves the others' results unchanged."""

    norm: Norm
    starts: ImageRNG | None = None

    def get_random_start(self, x0, epsilon: float):
        import eagerpy as ep

        raw = x0.raw
        if self.starts is None or len(self.starts) != len(raw):
            raise RuntimeError("per-image random starts were not set for this batch")
        n = raw[0].numel()
        if self.norm == "linf":
            delta = self.starts.uniform(-epsilon, epsilon, n)
        else:  # uniform in the L2 ball (Voelker et al. 2017): a normal in n + 2 dimensions, normalised, cut to n
            g = self.starts.randn(n + 2)
            delta = epsilon * (g / g.norm(dim=1, keepdim=True))[:, :n]
        return x0 + ep.astensor(delta.reshape(raw.shape).to(raw.device, raw.dtype))


def attack_at(
    attack,
    fmodel,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    norm: Norm,
    seed: int,
    ctx: EvalContext,
    name: str,
    ids: torch.Tensor | None = None,
    targets: torch.Tensor | None = None,
) -> torch.Tensor:
    """Adversarials at one epsilon, batch by batch, checked to lie within it. Foolbox takes no
    seed: its random start draws from torch's global RNG, so a forked copy is seeded and the
    caller's RNG stays untouched. With ``ids`` (test-set indices of the rows of ``x``) an attack
    made by ``pgd_attack(per_image_starts=True)`` draws each image's start from its own generator.
    With ``targets`` (a class per row) the attack aims at them (Foolbox's targeted criterion)."""
    if eps == 0:  # the only image within epsilon 0 is the image itself
        ctx.progress.advance(len(y))
        return x.cpu().clone()
    advs = []
    with forked_rng(ctx, seed):
        for sl in _batches(len(y), ctx.batch_size):
            xb, yb = x[sl].to(ctx.device), y[sl].to(ctx.device)
            if ids is not None:
                attack.starts = ImageRNG.for_images(seed, ids[sl])
            criterion = (
                yb if targets is None else foolbox().criteria.TargetedMisclassification(targets[sl].to(ctx.device))
            )
            _, clipped, _ = attack(fmodel, xb, criterion, epsilons=[eps])
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
        p = self.params
        return n_images * (len(p.epsilons) * (1 + len(p.budget_fractions)) + (p.sanity_epsilon != 0))

    def attack_iterations(self) -> dict[str, int]:
        """Epsilon 0 costs nothing (its answer is the image); the sanity probe is one more epsilon;
        each convergence rerun attacks the grid again at its fraction of the steps."""
        p = self.params
        attacked = sum(e > 0 for e in p.epsilons)
        reruns = sum(attacked * self._fraction(f).steps for f in p.budget_fractions)
        return {"pgd": (attacked + (p.sanity_epsilon != 0)) * p.steps + reruns}

    def _fraction(self, fraction: float) -> PGDParams:
        p = self.params
        return dataclasses.replace(p, steps=max(1, round(p.steps * fraction)), budget_fractions=(), sanity_epsilon=0)

    @property
    def metric(self) -> MetricId:
        target = self.params.target
        return MetricId(f"pgd-{self.params.norm}" + ("" if target == "none" else f"-{target}"))

    def notes(self):
        notes = {"attack": f"foolbox {type(self._attack()).__name__}", "semantics": CLEAN_ERRORS}
        if self.params.schedule == "nested":
            notes["schedule"] = NESTED
        if self.params.target != "none":
            notes["target"] = TARGETS[self.params.target]
        return notes

    def targets(self, model, x, y, ctx: EvalContext) -> torch.Tensor | None:
        """The class each image is pushed towards (None: untargeted)."""
        rule = self.params.target
        if rule == "none":
            return None
        with torch.no_grad():
            logits = torch.cat([model(x[sl].to(ctx.device)).cpu() for sl in _batches(len(y), ctx.batch_size)])
        if rule == "least-likely":
            return logits.argmin(1)
        draw = ImageRNG.for_images(self.point_seed(ctx, "targets"), ctx.image_ids(x))
        return (y + draw.randint(1, logits.shape[1], 1).flatten()) % logits.shape[1]  # never the label

    def _attack(self):
        p = self.params
        return pgd_attack(p.norm, p.steps, p.rel_stepsize, p.random_start, per_image_starts=p.schedule == "nested")

    @contextlib.contextmanager
    def session(self, model, x, y, ctx: EvalContext):
        fmodel = foolbox().PyTorchModel(model, bounds=(0, 1), device=ctx.device)
        alive = ctx.clean_correct(model, x, y).clone() if self.params.schedule == "nested" else None
        yield _Session(self._attack(), fmodel, alive, self.targets(model, x, y, ctx))

    def _attack_rows(self, state: _Session, rows, eps: float, seed: int, model, x, y, ctx: EvalContext):
        """Per-image correctness of ``rows`` after an attack at ``eps``."""
        ids = ctx.image_ids(x)[rows] if state.alive is not None else None
        targets = state.targets[rows] if state.targets is not None else None
        adv = attack_at(
            state.attack,
            state.fmodel,
            x[rows],
            y[rows],
            eps,
            self.params.norm,
            seed,
            ctx,
            self.metric.label,
            ids,
            targets,
        )
        return predict(model, adv, ctx) == y[rows]

    def _nested(self, state: _Session, eps: float, seed: int, model, x, y, ctx: EvalContext) -> torch.Tensor:
        """Attack the images still standing; the others stay broken (their adversarial is within eps)."""
        rows = state.alive.nonzero().flatten()
        ctx.progress.advance(len(y) - len(rows))
        if eps > 0 and len(rows):
            state.alive[rows] = self._attack_rows(state, rows, eps, seed, model, x, y, ctx)
        else:
            ctx.progress.advance(len(rows))
        return state.alive.clone()

    def at(self, eps, state: _Session, model, x, y, ctx: EvalContext):
        seed = self.point_seed(ctx, eps)
        if state.alive is not None:
            return self._nested(state, eps, seed, model, x, y, ctx)
        return self._attack_rows(state, slice(None), eps, seed, model, x, y, ctx)

    def finish(self, state: _Session, model, x, y, ctx: EvalContext, out: EvalOutput) -> None:
        """The convergence reruns, then the large-epsilon probe (accuracy near zero there, else
        gradient masking is suspected)."""
        p, name = self.params, self.metric.label
        full = dict(out.points(self.metric))
        for fraction in p.budget_fractions:
            short = PGD(self._fraction(fraction)).run(model, x, y, ctx).points(self.metric)
            out.metrics += [Metric(self.metric, eps, f"accuracy at {fraction:g} budget", acc) for eps, acc in short]
            out.flags += sanity.pgd_convergence_flag(name, fraction, short, full, p.converged_within)
        big = sanity_epsilon(p.sanity_epsilon, p.norm, x)
        if big > 0:
            seed = self.point_seed(ctx, ("sanity", big))
            if state.alive is not None and big >= max(p.epsilons):
                correct = self._nested(state, big, seed, model, x, y, ctx)
            else:
                correct = self._attack_rows(state, slice(None), big, seed, model, x, y, ctx)
            acc = correct.double().mean().item()
            out.metrics.append(Metric(self.metric, big, "sanity probe accuracy", acc))
            out.flags += sanity.near_zero_flag(name, big, acc, p.sanity_limit)


@dataclass
class _Session:
    attack: object
    fmodel: object
    alive: torch.Tensor | None  # nested schedule: the images no epsilon so far has broken (clean errors never stand)
    targets: torch.Tensor | None = None  # targeted: the class each image is pushed towards
