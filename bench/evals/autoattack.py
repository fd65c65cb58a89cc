"""AutoAttack (Croce & Hein 2020) through `pyautoattack`, standard or custom attack lists.

AutoAttack re-seeds torch's global RNG in every attack: each call runs inside a forked RNG so
that it cannot change any other cell. Its own checks (randomised or non-logit outputs, too few
classes, ...) are logged as warnings; they are captured and stored as sanity flags."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Literal

from pydantic import ConfigDict

from bench.evals.attacks import Epsilons, MaxImages, check_epsilons, distances
from bench.evals.base import EpsilonCurveEvaluation, EvalContext, EvalOutput, forked_rng, predict

AttackName = Literal["apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t"]


@dataclass(frozen=True)
class AutoAttackParams:
    __pydantic_config__ = ConfigDict(extra="forbid")
    norm: Literal["linf", "l2"]
    epsilons: Epsilons
    version: Literal["standard", "custom"] = "standard"
    attacks: tuple[AttackName, ...] = ()  # only with version = "custom"
    max_images: MaxImages = 0

    def __post_init__(self):
        check_epsilons(self.norm, self.epsilons)
        if (self.version == "custom") != bool(self.attacks):
            raise ValueError("give 'attacks' exactly when version = 'custom'")


class _Captured(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


class AutoAttackEval(EpsilonCurveEvaluation):
    Params = AutoAttackParams
    version = 2  # 2: seeds common to all models
    metric_prefix, plot, robustbench_linf = "autoattack", "autoattack", ("eps", "autoattack_acc")
    title = "AutoAttack robust accuracy (clean errors count), mean ± SEM over seeds"

    def work(self, n_images: int) -> int:
        return n_images * len(self.params.epsilons)

    def notes(self):
        p = self.params
        attacks = list(p.attacks) if p.version == "custom" else None
        return {
            "attack": f"pyautoattack {p.version}" + (f" {attacks}" if attacks else ""),
            "semantics": "clean errors count as failures; images checked to lie within epsilon",
        }

    @contextlib.contextmanager
    def session(self, model, x, y, ctx: EvalContext):
        """AutoAttack's own checks (gradient masking, randomness) are log messages: kept as flags."""
        logger, captured = logging.getLogger("auto-attack"), _Captured()
        logger.addHandler(captured)
        try:
            yield captured
        finally:
            logger.removeHandler(captured)

    def at(self, eps, captured, model, x, y, ctx: EvalContext):
        from pyautoattack import AutoAttack

        p = self.params
        if eps == 0:
            robust = ctx.clean_correct(model, x, y)
        else:
            seed = self.point_seed(ctx, eps) % 2**31
            with forked_rng(ctx):  # AutoAttack re-seeds the global RNG itself
                aa = AutoAttack(
                    model,
                    norm="Linf" if p.norm == "linf" else "L2",
                    eps=eps,
                    version=p.version,
                    attacks=list(p.attacks) if p.version == "custom" else None,
                    seed=seed,
                    device=ctx.device,
                )
                aa.verbose = False
                adv, _ = aa.run_standard_evaluation(x.to(ctx.device), y.to(ctx.device), batch_size=ctx.batch_size)
            adv = adv.detach().cpu()
            if not bool((distances(x, adv, p.norm) <= eps * (1 + 1e-5) + 1e-6).all()):
                raise RuntimeError(f"{self.metric.label}: AutoAttack returned images outside epsilon {eps}")
            robust = predict(model, adv, ctx) == y
        ctx.progress.advance(len(y))
        return robust

    def finish(self, captured, model, x, y, ctx: EvalContext, out: EvalOutput) -> None:
        out.flags += [f"{self.metric.label}: AutoAttack check: {m}" for m in dict.fromkeys(captured.messages)]
