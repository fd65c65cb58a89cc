"""The paper's Table-1 metric: per image, the smallest adversarial perturbation found by an
ensemble of Foolbox attacks, in L2 and L-inf at [0,1] scale.

Attacks run in the card's order on the same images. Each starts from, or searches below, the
running best, so later attacks only spend work where they can still improve it; the per-attack
numbers are therefore conditional on the order (stated in the notes). The robust-accuracy curve
is read off the same per-image distances. An attack that fails on a batch is recorded (images
not found by it, reason in the notes) and never aborts the cell."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from typing import Annotated, Any

import numpy as np
import pandas as pd
import torch
from pydantic import AfterValidator, ConfigDict, Field, TypeAdapter, ValidationError

from bench.config import ADDED
from bench.evals import sanity
from bench.evals.attacks import MINIMAL_ATTACKS, MaxImages, MinimalAttack, MinimalNorm, distances, foolbox
from bench.evals.base import EvalContext, EvalOutput, Evaluation, Example, Metric, forked_rng, predict
from bench.evals.reporting import Curve, DetailTable, MetricId, ReportSpec, Summary
from bench.seeds import sub_seed


def _known_attack(name: str) -> str:
    if name not in MINIMAL_ATTACKS:
        raise ValueError(f"unknown attack {name!r}; known: {', '.join(MINIMAL_ATTACKS.names())}")
    return name


AttackName = Annotated[str, AfterValidator(_known_attack)]
Epsilons = tuple[Annotated[float, Field(ge=0, le=1e3)], ...]
CLEAN_ERROR, NOT_FOUND = -1, -2  # winner codes beside attack indices


@dataclass(frozen=True)
class MinimalParams:
    __pydantic_config__ = ConfigDict(extra="forbid")
    # in order: bisection attacks first (PGD searches the whole box), then the minimizers, then the
    # attacks that refine the running best from an adversarial start
    attacks: Annotated[tuple[AttackName, ...], Field(min_length=1)] = (
        "pgd",
        "bim",
        "deepfool",
        "fmn",
        "brendel-bethge",
        "boundary",
        "hopskipjump",
    )
    norms: Annotated[tuple[MinimalNorm, ...], Field(min_length=1)] = ("l2", "linf")
    curve_epsilons_l2: Epsilons = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0)
    curve_epsilons_linf: Epsilons = (0.0, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1)
    curve_epsilons_l1: Epsilons = field(default=(0.0, 1.0, 2.5, 5.0, 10.0, 20.0), metadata=ADDED)
    masking_factor: Annotated[float, Field(gt=0, le=1)] = 0.5  # black-box < factor x white-box: masking sign
    masking_limit: Annotated[float, Field(ge=0, le=1)] = 0.02  # ... on more than this fraction of images
    # convergence: the whole chain again at these fractions of every attack's steps, on fresh state;
    # a median at a fraction more than converged_within (relative) above the full budget's is flagged
    # as not converged (more steps would likely lower it further). () skips the check (and its cost)
    budget_fractions: tuple[Annotated[float, Field(gt=0, lt=1)], ...] = (0.5,)
    converged_within: Annotated[float, Field(gt=0, le=1)] = 0.02
    max_images: MaxImages = 0
    # each attack's own parameters (its Params), filled with its defaults; a card sets them in a
    # table named by the attack: [evaluations.boundary] steps = 200
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if any(e > 1 for e in self.curve_epsilons_linf):
            raise ValueError(
                f"curve_epsilons_linf: L-inf epsilons are at most 1 (got {max(self.curve_epsilons_linf):g})"
            )
        for key, values in (("attacks", self.attacks), ("norms", self.norms)):
            if len(set(values)) != len(values):
                raise ValueError(f"'{key}' lists an entry more than once")
        unknown = sorted(set(self.options) - set(self.attacks))
        if unknown:
            raise ValueError(f"options for {unknown}, which are not in 'attacks'")
        typed = {}
        for name in self.attacks:
            attack = MINIMAL_ATTACKS.get(name)
            cls, given = attack.Params, self.options.get(name, {})
            if isinstance(given, cls):
                typed[name] = given
            else:
                try:
                    typed[name] = TypeAdapter(cls).validate_json(json.dumps(given), strict=True)
                except ValidationError as exc:
                    err = exc.errors()[0]
                    raise ValueError(f"[{name}] {'.'.join(map(str, err['loc']))}: {err['msg']}") from None
            lacking = sorted(set(typed[name].norms) - set(attack.norms))
            if lacking:
                raise ValueError(
                    f"[{name}] norms: {name} has no {', '.join(lacking)} (it has {', '.join(attack.norms)})"
                )
        object.__setattr__(self, "options", typed)
        for norm in self.norms:
            if not any(MINIMAL_ATTACKS.get(a).runs_in(typed[a], norm) for a in self.attacks):
                raise ValueError(f"norms: no attack in 'attacks' runs in {norm}; add one or drop {norm!r}")


def quantile(d: np.ndarray, q: float) -> float:
    """np.quantile, with inf (not nan) where infinite values meet."""
    with np.errstate(invalid="ignore"):  # inf - inf while interpolating
        v = float(np.quantile(d, q))
    return float("inf") if np.isnan(v) else v


def nearest_other_class(x: torch.Tensor, pred: torch.Tensor, y: torch.Tensor, norm: MinimalNorm) -> torch.Tensor:
    """Per image, the index of the closest evaluation image the model assigns to another class
    than the label (-1 if none): a deterministic adversarial start for decision-based attacks."""
    flat = x.flatten(1)
    idx = torch.full((len(x),), -1, dtype=torch.long)
    for s in range(0, len(x), 256):
        d = torch.cdist(flat[s : s + 256], flat, p={"linf": float("inf"), "l2": 2.0, "l1": 1.0}[norm])
        d[pred.unsqueeze(0) == y[s : s + 256].unsqueeze(1)] = float("inf")
        val, arg = d.min(dim=1)
        idx[s : s + 256] = torch.where(torch.isfinite(val), arg, torch.full_like(arg, -1))
    return idx


class RunningBest:
    """The ensemble's state for one norm: per image the smallest distance so far, its image and
    the attack that found it (clean errors count 0, images nothing fooled inf)."""

    def __init__(self, x: torch.Tensor, clean_wrong: torch.Tensor):
        self.x, self.clean_wrong = x, clean_wrong
        self.distance = torch.where(clean_wrong, 0.0, torch.tensor(float("inf")))
        self.image = x.clone()
        self.winner = torch.where(clean_wrong, CLEAN_ERROR, NOT_FOUND)
        self.nearest: torch.Tensor | None = None  # nearest other-class image, for attacks that need a start

    def has_start(self) -> torch.Tensor:
        return torch.isfinite(self.distance) | (self.nearest >= 0)

    def starts(self, rows: torch.Tensor) -> torch.Tensor:
        """Adversarial starting points: the running best, else the nearest other-class image."""
        found = torch.isfinite(self.distance[rows]).view(-1, 1, 1, 1)
        return torch.where(found, self.image[rows], self.x[self.nearest[rows].clamp(min=0)])

    def offer(self, rows: torch.Tensor, images: torch.Tensor, d: torch.Tensor, attack_index: int) -> None:
        better = d < self.distance[rows]
        self.distance[rows[better]], self.image[rows[better]] = d[better], images[better]
        self.winner[rows[better]] = attack_index


class Counted(torch.nn.Module):
    """The model as the attacks see it, counting images through its forward and backward
    passes: each attack's budget, as AttackBench reports it (the ensemble's own checks use the
    bare model and are not counted)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model, self.forwards, self.backwards = model, 0, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        self.forwards += len(x)
        if out.requires_grad:
            n = len(x)

            def count(_grad):
                self.backwards += n

            out.register_hook(count)
        return out


@dataclass(frozen=True)
class AttackRun:
    distance: torch.Tensor  # its own result per image (clean errors 0, not found inf)
    forwards: float  # model passes per evaluation image
    backwards: float
    seconds: float
    median_after: float  # the ensemble median once this attack has run (what each attack added)


def optimality(own: torch.Tensor, best: torch.Tensor, scored: torch.Tensor) -> float:
    """Mean over the scored images of best-known / own distance: 1 where the attack found the
    ensemble's best, 0 where it found nothing (AttackBench's per-attack optimality, per image)."""
    if not bool(scored.any()):
        return float("nan")
    ratio = torch.where(torch.isfinite(own), best / own.clamp_min(1e-12), torch.zeros_like(own))
    return float(ratio[scored].double().mean())


def gradient_check(model, x, y, rows: torch.Tensor, ctx: EvalContext) -> tuple[float, float]:
    """Shares of the correctly classified images whose input gradient of the logit margin (true
    class minus the best other) is exactly zero, or not finite: the signature of shattered or
    obfuscated gradients, on which gradient attacks fail silently. The margin, unlike the
    cross-entropy, does not saturate on confident images."""
    index = rows.nonzero().squeeze(1)
    if len(index) == 0:
        return 0.0, 0.0
    zero = bad = 0
    for s in range(0, len(index), ctx.batch_size):
        b = index[s : s + ctx.batch_size]
        xb = x[b].to(ctx.device).requires_grad_(True)
        yb = y[b].to(ctx.device)
        logits = model(xb)
        margin = logits.gather(1, yb[:, None])[:, 0] - logits.scatter(1, yb[:, None], float("-inf")).amax(1)
        (grad,) = torch.autograd.grad(margin.sum(), xb)
        g = grad.flatten(1)
        finite = torch.isfinite(g).all(1)
        bad += int((~finite).sum())
        zero += int((finite & (g.abs().amax(1) == 0)).sum())
    return zero / len(index), bad / len(index)


class Minimal(Evaluation):
    """Clean errors count as distance 0; images no attack fooled count as +inf (so the median
    is an upper bound only while found >= 50%)."""

    Params = MinimalParams
    grid = "norms"
    version = 5  # 5: budgets, optimality, convergence at a fraction of the budget, gradient check (4: common random streams; 3: ensemble)

    @staticmethod
    def prepare(table: dict) -> dict:
        """A card sets an attack's parameters in a table named by the attack."""
        attacks = {k: v for k, v in table.items() if k in MINIMAL_ATTACKS and isinstance(v, dict)}
        rest = {k: v for k, v in table.items() if k not in attacks}
        return {**rest, "options": {**rest.get("options", {}), **attacks}} if attacks else table

    def report(self) -> ReportSpec:
        summaries, curves = [], []
        for norm in self.params.norms:
            metric = MetricId(f"minimal-{norm}")
            summaries.append(
                Summary(
                    f"{metric.name} median",
                    metric,
                    "median",
                    "distance",
                    "log-ratio",
                    percent=False,
                    distribution_plot="minimal",
                )
            )
            curves.append(
                Curve(
                    MetricId(f"ensemble-{norm}"),
                    f"{norm} epsilon ([0,1] scale)",
                    "ensemble",
                    "robust accuracy from the minimal-perturbation ensemble (clean errors count), "
                    "mean ± SEM over seeds",
                )
            )
        return ReportSpec(
            tuple(curves),
            tuple(summaries),
            (
                DetailTable("Minimal-perturbation ensemble", ENSEMBLE_NOTE, ensemble_table),
                DetailTable("Attack budgets and optimality", BUDGET_NOTE, budget_table),
            ),
        )

    def attacks_for(self, norm: MinimalNorm) -> list[MinimalAttack]:
        p = self.params
        return [
            MINIMAL_ATTACKS.get(a)(p.options[a], norm)
            for a in p.attacks
            if MINIMAL_ATTACKS.get(a).runs_in(p.options[a], norm)
        ]

    def work(self, n_images: int) -> int:
        rounds = 1 + len(self.params.budget_fractions)  # each convergence rerun passes every image again
        return n_images * rounds * sum(len(self.attacks_for(n)) for n in self.params.norms)

    def attack_iterations(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for norm in self.params.norms:
            for attack in self.attacks_for(norm):
                rerun = sum(attack.scaled(f).schedule_length() for f in self.params.budget_fractions)
                out[attack.name] = out.get(attack.name, 0) + attack.schedule_length() + rerun
        return out

    def run(self, model, x, y, ctx: EvalContext) -> EvalOutput:
        counted = Counted(model).eval()
        fmodel = foolbox().PyTorchModel(counted, bounds=(0, 1), device=ctx.device)
        clean_wrong = ~ctx.clean_correct(model, x, y)
        out = EvalOutput(
            notes={
                "semantics": "per-image minimal perturbation at [0,1] scale over the attack ensemble; clean errors = 0, "
                "not found = inf; per-attack numbers depend on the order (later attacks search below or start "
                "from the running best); forwards and backwards are model passes per evaluation image"
            }
        )
        zero, bad = gradient_check(model, x, y, ~clean_wrong, ctx)
        for norm in self.params.norms:
            attacks = self.attacks_for(norm)
            out.notes[f"attacks {norm}"] = ", ".join(f"foolbox {a.describe()}" for a in attacks)
            state = RunningBest(x, clean_wrong)
            if any(a.needs_start for a in attacks):
                state.nearest = nearest_other_class(x, ctx.clean_predictions(model, x), y, norm)
            runs = [
                self._run_attack(k, a, model, fmodel, counted, x, y, state, ctx, out) for k, a in enumerate(attacks)
            ]
            out.notes[f"seconds {norm}"] = ", ".join(f"{a.name} {r.seconds:.2f}" for a, r in zip(attacks, runs))
            self._report(norm, state, dict(zip((a.name for a in attacks), runs)), attacks, out)
            self._convergence(norm, state, model, fmodel, counted, x, y, ctx, out)
            out.metrics += [
                Metric(MetricId(f"minimal-{norm}"), None, s, v)
                for s, v in (("zero gradient", zero), ("nan gradient", bad))
            ]
        out.flags += sanity.gradient_flags("minimal", zero, bad)
        return out

    def _run_attack(
        self,
        k: int,
        attack: MinimalAttack,
        model,
        fmodel,
        counted: Counted,
        x,
        y,
        state: RunningBest,
        ctx: EvalContext,
        out: EvalOutput,
    ) -> AttackRun:
        """One attack over the images it can still improve: its own distances, its budget, and
        the ensemble median once it has run."""
        t, forwards, backwards = time.perf_counter(), counted.forwards, counted.backwards
        dist = torch.where(state.clean_wrong, 0.0, torch.tensor(float("inf")))
        rows = ~state.clean_wrong
        if attack.needs_start:
            ctx.progress.advance(int((rows & ~state.has_start()).sum()))
            rows &= state.has_start()
        failures = []
        with forked_rng(ctx, sub_seed(self.point_seed(ctx, attack.norm), attack.name)):
            index = rows.nonzero().squeeze(1)
            for s in range(0, len(index), ctx.batch_size):
                b = index[s : s + ctx.batch_size]
                xb, yb = x[b].to(ctx.device), y[b].to(ctx.device)
                start = state.starts(b).to(ctx.device) if attack.needs_start else None
                try:
                    adv = attack.run(fmodel, xb, yb, state.distance[b].to(ctx.device), start)
                except (ValueError, RuntimeError, AssertionError) as exc:  # recorded, not fatal
                    failures.append(f"{len(b)} images: {type(exc).__name__}: {exc}")
                    ctx.progress.advance(len(b))
                    continue
                adv = adv.detach().clamp(0, 1)
                fooled = predict(model, adv, ctx) != y[b]
                d = torch.where(fooled, distances(xb, adv, attack.norm).cpu(), torch.tensor(float("inf")))
                dist[b] = d
                state.offer(b, adv.cpu(), d, k)
                ctx.progress.advance(len(b))
        if failures:
            out.notes[f"failures {attack.name} {attack.norm}"] = "; ".join(failures)
        n = max(len(x), 1)
        return AttackRun(
            dist,
            (counted.forwards - forwards) / n,
            (counted.backwards - backwards) / n,
            time.perf_counter() - t,
            float(np.median(state.distance.numpy())),
        )

    def _convergence(
        self, norm: MinimalNorm, full: RunningBest, model, fmodel, counted, x, y, ctx, out: EvalOutput
    ) -> None:
        """The chain again at each budget fraction, from scratch (the same random streams: common
        random numbers sharpen the comparison): its median against the full budget's."""
        metric, final = MetricId(f"minimal-{norm}"), float(np.median(full.distance.numpy()))
        for fraction in self.params.budget_fractions:
            attacks = [a.scaled(fraction) for a in self.attacks_for(norm)]
            state = RunningBest(x, full.clean_wrong)
            state.nearest = full.nearest
            scratch = EvalOutput()
            for k, attack in enumerate(attacks):
                self._run_attack(k, attack, model, fmodel, counted, x, y, state, ctx, scratch)
            median = float(np.median(state.distance.numpy()))
            out.metrics.append(Metric(metric, fraction, "median at budget", median))
            out.flags += sanity.convergence_flag(metric.name, fraction, median, final, self.params.converged_within)
        if self.params.budget_fractions:
            out.metrics.append(Metric(metric, 1.0, "median at budget", final))

    def _report(
        self,
        norm: MinimalNorm,
        state: RunningBest,
        runs: dict[str, AttackRun],
        attacks: list[MinimalAttack],
        out: EvalOutput,
    ) -> None:
        p, metric = self.params, MetricId(f"minimal-{norm}")
        best, clean_wrong = state.distance, state.clean_wrong
        d = best.numpy()
        found = float(np.isfinite(d).mean())
        out.metrics += [
            Metric(metric, None, "median", float(np.median(d))),  # torch.median takes the lower middle
            Metric(metric, None, "q25", quantile(d, 0.25)),
            Metric(metric, None, "q75", quantile(d, 0.75)),
            Metric(metric, None, "found", found),
        ]
        out.examples += [
            Example(metric, None, "distance", best),
            Example(metric, None, "winner", state.winner.double()),
        ]
        correct = int((~clean_wrong).sum())
        scored = ~clean_wrong & torch.isfinite(best) & (best > 0)  # where optimality is defined
        for k, attack in enumerate(attacks):
            run = runs[attack.name]
            a = run.distance.numpy()
            out.metrics += [
                Metric(metric, None, "median", float(np.median(a)), attack.name),
                Metric(metric, None, "found", float(np.isfinite(a).mean()), attack.name),
                Metric(metric, None, "wins", float((state.winner == k).sum()) / max(correct, 1), attack.name),
                Metric(metric, None, "optimality", optimality(run.distance, best, scored), attack.name),
                Metric(metric, None, "forwards", run.forwards, attack.name),
                Metric(metric, None, "backwards", run.backwards, attack.name),
                Metric(metric, None, "median after", run.median_after, attack.name),
            ]
            out.examples.append(Example(metric, None, "distance", run.distance, attack.name))
        curve = MetricId(f"ensemble-{norm}")
        for eps in getattr(p, f"curve_epsilons_{norm}"):
            out.accuracy(curve, eps, best > eps)  # no adversarial at or below eps (clean errors: 0 > eps is false)
        clean = float((~clean_wrong).double().mean())
        out.flags += sanity.accuracy_curve_flags(curve.name, out.points(curve), clean)
        out.flags += sanity.not_found_flag(metric.name, found) + sanity.nan_flag(metric.name, d.tolist())
        white = [runs[a.name].distance for a in attacks if a.access == "white-box"]
        black = [runs[a.name].distance for a in attacks if a.access == "black-box"]
        if white and black:
            wb, bb = torch.stack(white).amin(0), torch.stack(black).amin(0)
            beaten = (bb < p.masking_factor * wb) & ~clean_wrong
            fraction = float(beaten.sum()) / max(correct, 1)
            out.metrics.append(Metric(metric, None, "black-box beats white-box", fraction))
            out.flags += sanity.black_box_flag(metric.name, fraction, p.masking_factor, p.masking_limit)


ENSEMBLE_NOTE = (
    "Median and interquartile range over images of the smallest perturbation any attack found ([0,1] "
    "scale; clean errors 0, not found inf). Per attack: the median of its own results and, in "
    "parentheses, the share of correctly classified images on which it found the smallest. Attacks run "
    "in the listed order and search below, or start from, the running best, so per-attack numbers are "
    "conditional on that order. Black-box attacks finding less than half the white-box distance on many "
    "images is a sign of gradient masking."
)


def ensemble_table(rows: pd.DataFrame, models: list[str]) -> pd.DataFrame:
    """Per model and norm (mean over seeds): ensemble median [IQR], images found, and each
    attack's own median and share of wins."""
    out = []
    minimal = rows[rows["metric"].str.startswith("minimal-")]
    for model in models:
        for metric in dict.fromkeys(minimal["metric"]):
            d = minimal[(minimal["model"] == model) & (minimal["metric"] == metric)]
            if d.empty:
                continue
            overall = d[d["attack"] == ""].groupby("statistic", sort=False)["value"].mean()
            row = {
                "model": model,
                "norm": metric.split("-", 1)[1],
                "median": f"{overall['median']:.4g}",
                "IQR": f"[{overall.get('q25', math.nan):.4g}, {overall.get('q75', math.nan):.4g}]",
                "found %": f"{overall['found'] * 100:.1f}",
            }
            per = d[d["attack"] != ""].groupby(["attack", "statistic"], sort=False)["value"].mean()
            for attack in dict.fromkeys(d[d["attack"] != ""]["attack"]):
                row[attack] = f"{per[(attack, 'median')]:.4g} ({per.get((attack, 'wins'), math.nan) * 100:.0f}%)"
            if "black-box beats white-box" in overall:
                row["black-box < white-box/2 %"] = f"{overall['black-box beats white-box'] * 100:.1f}"
            out.append(row)
    return pd.DataFrame(out)


BUDGET_NOTE = (
    "Per attack, in the ensemble's order (mean over seeds): model forward and backward passes per "
    "evaluation image (its budget; seconds per attack are in each cell's notes), its optimality (mean over "
    "correctly classified images of the best-known distance, the ensemble's, over its own; 1 = it found "
    "the best everywhere, 0 counts a miss), its share of wins, and the ensemble median once it had run. "
    "Convergence is checked apart: the whole chain again at a fraction of its steps (budget_fractions), "
    "flagged where its median is more than converged_within above the full budget's. 'zero grad %': correctly "
    "classified images whose input gradient of the logit margin is exactly zero (a masking sign)."
)


def budget_table(rows: pd.DataFrame, models: list[str]) -> pd.DataFrame:
    """Per model, norm and attack (mean over seeds): forwards and backwards per image,
    optimality, wins and the median after it."""
    out = []
    minimal = rows[rows["metric"].str.startswith("minimal-")]
    for model in models:
        for metric in dict.fromkeys(minimal["metric"]):
            d = minimal[(minimal["model"] == model) & (minimal["metric"] == metric)]
            per = d[d["attack"] != ""].groupby(["attack", "statistic"], sort=False)["value"].mean()
            overall = d[d["attack"] == ""].groupby("statistic", sort=False)["value"].mean()
            for attack in dict.fromkeys(d[d["attack"] != ""]["attack"]):
                if (attack, "forwards") not in per:
                    continue  # stored before version 5: no budgets
                out.append(
                    {
                        "model": model,
                        "norm": metric.split("-", 1)[1],
                        "attack": attack,
                        "forwards/img": f"{per[(attack, 'forwards')]:.0f}",
                        "backwards/img": f"{per[(attack, 'backwards')]:.0f}",
                        "optimality": f"{per[(attack, 'optimality')]:.3f}",
                        "wins %": f"{per[(attack, 'wins')] * 100:.0f}",
                        "median after": f"{per[(attack, 'median after')]:.4g}",
                        "zero grad %": f"{overall.get('zero gradient', math.nan) * 100:.1f}",
                    }
                )
    return pd.DataFrame(out)
