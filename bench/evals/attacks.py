"""The minimization attacks of the minimal-perturbation ensemble, one small class each over a
Foolbox 3 attack. Each returns candidate adversarial images; the ensemble (bench.evals.minimal)
checks them itself (the model's prediction, the true distance), so no attack is trusted.

An attack sees the ensemble's running best per image: bisection attacks search only below it
and stop on an image as soon as they cannot reach it (early stopping), decision-based and
Brendel-Bethge attacks start from it (they need an adversarial starting point).

Each attack owns its parameters (a typed ``Params`` dataclass, Foolbox style), set in a suite
card as a table named by the attack: ``[evaluations.boundary] steps = 200``."""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal

import torch
from pydantic import ConfigDict, Field

from bench.config import ADDED
from bench.registry import Registry

Norm = Literal["linf", "l2"]  # fixed-epsilon attacks (PGD, transfer, AutoAttack)
MinimalNorm = Literal["linf", "l2", "l1"]  # the minimal-perturbation ensemble also measures L1 (sparse changes)
Steps = Annotated[int, Field(ge=1, le=1_000_000)]
Positive = Annotated[float, Field(gt=0, le=1e3)]
_FORBID = ConfigDict(extra="forbid")


Epsilon = Annotated[float, Field(ge=0, le=1e3)]
Epsilons = Annotated[tuple[Epsilon, ...], Field(min_length=1, max_length=1000)]
MaxImages = Annotated[int, Field(ge=0, le=100_000_000)]


def check_epsilons(norm: Norm, epsilons: tuple[float, ...]) -> None:
    """An L-inf epsilon above 1 allows any image in [0,1]: a typo, not a setting."""
    if norm == "linf" and any(e > 1 for e in epsilons):
        raise ValueError(f"L-inf epsilons are at most 1 at [0,1] scale (got {max(epsilons):g})")


def foolbox():
    import os

    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")  # foolbox imports GitPython
    import foolbox as fb

    return fb


def distances(x: torch.Tensor, adv: torch.Tensor, norm: MinimalNorm) -> torch.Tensor:
    d = (adv - x).flatten(1)
    if norm == "l1":
        return d.abs().sum(dim=1)
    return d.abs().amax(dim=1) if norm == "linf" else d.norm(dim=1)


@dataclass(frozen=True)
class StepsParams:
    __pydantic_config__ = _FORBID
    steps: Steps = 50
    # run in these of the evaluation's norms only (empty: all it has), e.g. FMN for L-inf where
    # DDN, which has no L-inf, covers L2
    norms: tuple[MinimalNorm, ...] = ()


class MinimalAttack(ABC):
    name: ClassVar[str]
    Params: ClassVar[type] = StepsParams
    norms: ClassVar[tuple[MinimalNorm, ...]] = ("l2", "linf")
    access: ClassVar[Literal["white-box", "black-box"]] = "white-box"
    needs_start: ClassVar[bool] = False  # needs an adversarial starting point per image

    def __init__(self, params: Any, norm: MinimalNorm):
        self.params, self.norm = params, norm

    def scaled(self, fraction: float) -> MinimalAttack:
        """The same attack at a fraction of its steps (a convergence check's shorter run)."""
        steps = max(1, round(self.params.steps * fraction))
        return type(self)(dataclasses.replace(self.params, steps=steps), self.norm)

    @classmethod
    def runs_in(cls, params: Any, norm: MinimalNorm) -> bool:
        return norm in cls.norms and (not params.norms or norm in params.norms)

    def describe(self) -> str:
        return f"{self.name} ({self.params.steps} steps)"

    def schedule_length(self) -> int:
        """Iterations per image of the whole schedule, in this attack's own unit of work (an upper
        bound: early stops and images it cannot improve cost less). ``bench perf`` scales a
        measured rate by it to estimate a suite's evaluation time."""
        return self.params.steps

    @abstractmethod
    def run(
        self, fmodel, x: torch.Tensor, y: torch.Tensor, best: torch.Tensor, start: torch.Tensor | None
    ) -> torch.Tensor:
        """Candidate adversarials for a batch. ``best``: the ensemble's smallest distance so far
        (inf where none); ``start``: adversarial starting points (only for needs_start)."""


MINIMAL_ATTACKS: Registry[type[MinimalAttack]] = Registry("minimal attack")


def register(name: str):
    """Registers an attack class under ``name``, which it also carries (notes, metrics)."""

    def decorator(cls):
        cls.name = name
        return MINIMAL_ATTACKS.register(name)(cls)

    return decorator


def _foolbox_class(names: dict[str, str], norm: MinimalNorm):
    return getattr(foolbox().attacks, names[norm])


class Minimization(MinimalAttack):
    """A Foolbox minimization attack, run once with ``epsilons=None`` (from ``start`` where it
    needs one)."""

    classes: ClassVar[dict[str, str]]  # norm -> Foolbox class name

    @abstractmethod
    def options(self) -> dict: ...

    def run(self, fmodel, x, y, best, start):
        attack = _foolbox_class(self.classes, self.norm)(**self.options())
        extra = {"starting_points": start} if self.needs_start else {}
        return attack(fmodel, x, y, epsilons=None, **extra)[0]


@register("deepfool")
class DeepFool(Minimization):
    classes = {"l2": "L2DeepFoolAttack", "linf": "LinfDeepFoolAttack"}

    def options(self):
        return {"steps": self.params.steps}


@dataclass(frozen=True)
class FMNParams(StepsParams):
    # Foolbox's default max_stepsize 1.0 is far too coarse for L2 at [0,1] scale on 28x28/32x32
    # images: the estimate then stops improving with more steps
    max_stepsize_l2: Positive = 0.1
    max_stepsize_linf: Positive = 1.0
    max_stepsize_l1: Positive = field(default=1.0, metadata=ADDED)  # Foolbox's default


@register("fmn")
class FMN(Minimization):
    Params = FMNParams
    classes = {"l2": "L2FMNAttack", "linf": "LInfFMNAttack", "l1": "L1FMNAttack"}
    norms = ("l2", "linf", "l1")

    def options(self):
        p = self.params
        return {"steps": p.steps, "max_stepsize": getattr(p, f"max_stepsize_{self.norm}")}


@dataclass(frozen=True)
class DDNParams(StepsParams):
    steps: Steps = 100
    init_epsilon: Positive = 1.0  # the first radius, at [0,1] scale


@register("ddn")
class DDN(Minimization):
    """Decoupled direction and norm (Rony et al. 2019), L2 only: a different loss (cross-entropy)
    and radius rule than FMN, so it lands in other local minima; the two together miss less."""

    Params = DDNParams
    classes = {"l2": "DDNAttack"}
    norms = ("l2",)

    def options(self):
        return {"steps": self.params.steps, "init_epsilon": self.params.init_epsilon}


def per_image_epsilon(cls):
    """A Foolbox gradient-descent attack whose epsilon is a per-image tensor of shape (N, 1, 1, 1):
    Foolbox's own step loop, random start and projection, one radius per image."""
    import eagerpy as ep

    class PerImage(cls):
        def get_random_start(self, x0, epsilon):
            if self.distance.p == ep.inf:
                return x0 + (2 * ep.uniform(x0, x0.shape, 0, 1) - 1) * epsilon
            n = x0.flatten(1).shape[1]
            r = ep.normal(x0, (len(x0), n + 2))  # uniform in the L2 ball (Foolbox's method)
            r = (r / r.norms.l2(axis=-1, keepdims=True))[:, :n].reshape(x0.shape)
            return x0 + epsilon * r

        def project(self, x, x0, epsilon):
            d = x - x0
            if self.distance.p == ep.inf:
                return x0 + ep.minimum(ep.maximum(d, -epsilon), epsilon)
            norms = ep.maximum(d.flatten(1).norms.l2(axis=-1), 1e-12).reshape(epsilon.shape)
            return x0 + d * ep.minimum(1, epsilon / norms)

    PerImage.__name__ = f"PerImage{cls.__name__}"
    return PerImage


@dataclass(frozen=True)
class BisectionParams(StepsParams):
    search_steps: Annotated[int, Field(ge=0, le=100)] = 10  # bisection steps below the running best
    rel_stepsize: Positive = 0.1  # step = rel_stepsize * epsilon


class Bisection(MinimalAttack):
    """Smallest epsilon at which a fixed-epsilon attack succeeds, by bisection per image in
    [0, running best]. Probes the running best first and gives up on an image where that fails:
    the attack cannot improve on the ensemble there. ``steps``: iterations of each probe."""

    Params = BisectionParams
    classes: ClassVar[dict[str, str]]
    random_start: ClassVar[bool]

    def describe(self) -> str:
        return f"{self.name} (bisection, {self.params.search_steps} steps x {self.params.steps} iterations)"

    def schedule_length(self) -> int:
        return (1 + self.params.search_steps) * self.params.steps  # the probe at the running best, then bisection

    def run(self, fmodel, x, y, best, start):
        import eagerpy as ep

        fb = foolbox()
        cls = per_image_epsilon(_foolbox_class(self.classes, self.norm))
        attack = cls(steps=self.params.steps, rel_stepsize=self.params.rel_stepsize, random_start=self.random_start)
        full = 1.0 if self.norm == "linf" else float(x[0].numel()) ** 0.5  # covers the whole [0,1] box
        hi = torch.where(torch.isfinite(best), best, torch.full_like(best, full)).to(x.device)
        lo = torch.zeros_like(hi)
        adv = x.clone()

        def probe(eps: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
            if not bool(rows.any()):
                return rows
            idx = rows.nonzero().squeeze(1)
            out = attack.run(
                fmodel, x[idx], fb.criteria.Misclassification(y[idx]), epsilon=ep.astensor(eps[idx].view(-1, 1, 1, 1))
            )
            ok = fmodel(out).argmax(1) != y[idx]
            hit = idx[ok]
            adv[hit] = out[ok]
            result = torch.zeros_like(rows)
            result[hit] = True
            return result

        found = probe(hi, hi > 0)
        active = found  # early stop: where the running best cannot be reached, stop
        hi = torch.where(found, distances(x, adv, self.norm), hi)
        for _ in range(self.params.search_steps):
            mid = (lo + hi) / 2
            success = probe(mid, active)
            hi = torch.where(success, torch.minimum(distances(x, adv, self.norm), mid), hi)
            lo = torch.where(active & ~success, mid, lo)
        return torch.where(found.view(-1, 1, 1, 1), adv, x)


@register("pgd")
class PGDSearch(Bisection):
    classes = {"l2": "L2ProjectedGradientDescentAttack", "linf": "LinfProjectedGradientDescentAttack"}
    random_start = True


@register("bim")
class BIMSearch(Bisection):
    classes = {"l2": "L2BasicIterativeAttack", "linf": "LinfBasicIterativeAttack"}
    random_start = False


class Refinement(Minimization):
    """Attacks that walk from an adversarial starting point towards the decision boundary."""

    needs_start = True

    def describe(self) -> str:
        return f"{self.name} ({self.params.steps} steps, from the running best)"


@register("fmn-refine")
class FMNRefine(Refinement):
    """FMN again, from the running best (or, where nothing was found yet, the nearest evaluation
    image of another predicted class): the fallback that reaches images a search from the clean
    image did not, and a second descent from a different point where it did."""

    Params = FMNParams
    classes = FMN.classes
    norms = FMN.norms
    options = FMN.options

    def schedule_length(self) -> int:
        return self.params.steps + 10  # Foolbox's binary search towards the start, then the steps


@dataclass(frozen=True)
class BrendelBethgeParams(StepsParams):
    steps: Steps = 200
    binary_search_steps: Annotated[int, Field(ge=1, le=100)] = 10


@register("brendel-bethge")
class BrendelBethge(Refinement):
    Params = BrendelBethgeParams
    classes = {"l2": "L2BrendelBethgeAttack", "linf": "LinfinityBrendelBethgeAttack", "l1": "L1BrendelBethgeAttack"}
    norms = ("l2", "linf", "l1")

    def options(self):
        return {"steps": self.params.steps, "binary_search_steps": self.params.binary_search_steps}

    def schedule_length(self) -> int:
        return self.params.steps + self.params.binary_search_steps  # the search towards the start, then the steps


@dataclass(frozen=True)
class EADParams(StepsParams):
    steps: Steps = 1000  # per binary-search step, with Foolbox's early abort
    binary_search_steps: Annotated[int, Field(ge=1, le=100)] = 9
    regularization: Annotated[float, Field(gt=0, le=10)] = 0.01  # beta, the L1 weight of the elastic net
    initial_const: Annotated[float, Field(gt=0, le=1e4)] = 0.001


@register("ead")
class EAD(Minimization):
    """Elastic-net attack (Chen et al. 2018), L1 only, with the L1 decision rule: a second L1
    minimizer beside FMN-L1, from another loss (Carlini-Wagner margin with an elastic net)."""

    Params = EADParams
    classes = {"l1": "EADAttack"}
    norms = ("l1",)

    def options(self):
        p = self.params
        return {
            "steps": p.steps,
            "binary_search_steps": p.binary_search_steps,
            "regularization": p.regularization,
            "initial_const": p.initial_const,
            "decision_rule": "L1",
        }

    def describe(self) -> str:
        return f"{self.name} ({self.params.binary_search_steps} x {self.params.steps} steps)"

    def schedule_length(self) -> int:
        return self.params.binary_search_steps * self.params.steps


@dataclass(frozen=True)
class BoundaryParams(StepsParams):
    steps: Steps = 1000


@register("boundary")
class Boundary(Refinement):
    Params = BoundaryParams
    classes = {"l2": "BoundaryAttack"}
    norms = ("l2",)
    access = "black-box"

    def options(self):
        return {"steps": self.params.steps}


@dataclass(frozen=True)
class HopSkipJumpParams(StepsParams):
    steps: Steps = 20
    gradient_evals: Annotated[int, Field(ge=1, le=100_000)] = 100  # initial; at most 10x this per step


@register("hopskipjump")
class HopSkipJump(Refinement):
    Params = HopSkipJumpParams
    classes = {"l2": "HopSkipJumpAttack", "linf": "HopSkipJumpAttack"}
    access = "black-box"

    def options(self):
        return {
            "steps": self.params.steps,
            "initial_gradient_eval_steps": self.params.gradient_evals,
            "max_gradient_eval_steps": self.params.gradient_evals * 10,
            "constraint": self.norm,
        }

    def schedule_length(self) -> int:
        """Model calls of the gradient estimates, which grow with the step as in Foolbox."""
        g = self.params.gradient_evals
        return sum(int(min(g * math.sqrt(step + 1), 10 * g)) for step in range(self.params.steps))
