"""Brain similarity as a measured column: how well a model's representational similarity matches
a target's, on held-out stimuli (never regularizer inputs). Per tap, and for the mix the model
learned (uniform for models without one): the Pearson correlation between the model's pairwise
similarities (centred cosine over the held-out stimuli, as the targets are built) and the
target's. Against each model's own training target, or against one named model's target (so a
baseline, or the shuffled control, is measured against the real one)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from pydantic import ConfigDict

from bench.evals.base import EvalContext, EvalOutput, Evaluation, Metric
from bench.evals.reporting import MetricId, ReportSpec, Summary
from bench.targets.base import unit_rows


@dataclass(frozen=True)
class SimilarityParams:
    __pydantic_config__ = ConfigDict(extra="forbid")
    target: str = ""  # a model of the suite whose training target is the reference; "" = each model's own


@dataclass(frozen=True)
class Targets:
    """The resource: a model's training target by model name (None without one), and the
    evaluated model's learned layer weights and taps."""

    get: Any  # name -> SimilarityTarget | None (built for the evaluated training seed)
    model: str
    layer_weights: list[float]
    taps: list[str]


def tap_similarity(features: torch.Tensor) -> torch.Tensor:
    """The dense centred cosine similarity of one tap's flattened features (float64)."""
    v = unit_rows(features.flatten(1)).double()
    return v @ v.T


def pair_similarities(features: torch.Tensor) -> np.ndarray:
    """i < j centred cosine similarities of one tap's flattened features."""
    s = tap_similarity(features)
    i, j = torch.triu_indices(len(s), len(s), 1)
    return s[i, j].numpy()


def mixed(per_tap: list, layer_weights: list[float]):
    """The taps' similarities mixed by the model's learned layer weights (uniform without)."""
    weights = np.asarray(layer_weights or [1 / len(per_tap)] * len(per_tap))
    return sum(w * s for w, s in zip(weights, per_tap))


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


class Similarity(Evaluation):
    Params = SimilarityParams
    needs = frozenset({"targets"})

    @property
    def metric(self) -> MetricId:
        return MetricId("similarity", self.params.target or "own")

    def sources(self) -> tuple[str, ...]:
        return (self.params.target,) if self.params.target else ()

    def report(self) -> ReportSpec:
        label = f"target of {self.params.target}" if self.params.target else "own target"
        return ReportSpec(
            summaries=(
                Summary(
                    f"{self.metric.label} r",
                    self.metric,
                    "correlation",
                    "",
                    "mean-difference",
                    percent=False,
                    ranked=False,
                    target_similarity=bool(self.params.target),
                    note=f"brain similarity: {label}",
                ),
            )
        )

    def run(self, model, x, y, ctx: EvalContext) -> EvalOutput:
        targets: Targets = ctx.resource("targets")
        name = self.params.target or targets.model
        target = targets.get(name)
        out = EvalOutput(
            notes={
                "semantics": "Pearson r of the model's pairwise similarities (centred cosine per tap; "
                "the learned mix, or uniform without one) with the target's, on its "
                "held-out stimuli"
            }
        )
        if target is None:
            out.notes["skipped"] = f"{name} has no similarity target"
            return out
        held = target.heldout_indices()
        if len(held) < 3:
            raise ValueError(
                f"similarity: the target of {name} keeps {len(held)} held-out stimuli; set "
                "regularizer.target.heldout (at least 3)"
            )
        i, j = torch.triu_indices(len(held), len(held), 1)
        reference = target.lookup(held[i], held[j]).double().numpy()
        with torch.no_grad():
            feats = [f.cpu() for f in model.features(target.images[held].to(ctx.device))]
        per_tap = [pair_similarities(f) for f in feats]
        mix = mixed(per_tap, targets.layer_weights)
        out.metrics.append(Metric(self.metric, None, "correlation", correlation(mix, reference)))
        out.metrics += [
            Metric(self.metric, float(k), "correlation", correlation(s, reference)) for k, s in enumerate(per_tap)
        ]
        out.notes["stimuli"] = f"{len(held)} held-out stimuli of {name}'s target ({target.description.get('kind')})"
        out.notes["taps"] = ", ".join(f"{k}: {t}" for k, t in enumerate(targets.taps))
        ctx.progress.advance(len(y))
        return out
