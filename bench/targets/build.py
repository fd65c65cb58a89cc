"""Target registry and the ``[regularizer.target]`` table of a zoo card.

A target kind is one class with a ``Params`` dataclass (its own card keys) and a ``build``
method; the shuffle controls wrap any of them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol

from pydantic import ConfigDict, Field

from bench.config import parse
from bench.errors import BenchError
from bench.registry import Registry
from bench.seeds import sub_seed
from bench.targets.base import ShuffledEntries, ShuffledIds, ShuffledWithinClass, SimilarityTarget, changed_fraction


@dataclass(frozen=True)
class Stimuli:
    """What a target kind must respect when it picks its stimuli: how many to keep out of
    training (held out, for measuring brain similarity), and per dataset the images it must not
    use (a model's validation split: the images that pick its checkpoint are never regularizer
    inputs)."""

    heldout: int = 0
    exclude: dict[str, Any] = field(default_factory=dict)  # dataset name -> indices of its training set


class TargetKind(Protocol):
    Params: type

    @staticmethod
    def build(params: Any, seed: int, data_root: Path | None, stimuli: Stimuli) -> SimilarityTarget: ...


TARGETS: Registry[TargetKind] = Registry("target")
SHUFFLES: Registry[Callable[[SimilarityTarget, int], SimilarityTarget]] = Registry("shuffle")
SHUFFLES.register("ids")(ShuffledIds)
SHUFFLES.register("entries")(ShuffledEntries)
SHUFFLES.register("within-class")(ShuffledWithinClass)
# target kinds that live above this package: imported when a card names them
TARGETS.lazy("neural", "bench.neural.pipeline:NeuralTarget")
TARGETS.lazy("raw", "bench.neural.pipeline:RawTarget")


@dataclass(frozen=True)
class TargetSpec:
    kind: str
    params: Any  # the kind's Params dataclass
    shuffle: Literal["none", "ids", "entries", "within-class"] = "none"
    seed: int = 0  # picks the stimuli; with the training seed, the shuffle permutation
    heldout: int = 0  # stimuli never used in training, for the similarity evaluation


@dataclass(frozen=True)
class _Common:
    __pydantic_config__ = ConfigDict(extra="allow")
    kind: str
    shuffle: Literal["none", "ids", "entries", "within-class"] = "none"
    seed: int = 0
    heldout: Annotated[int, Field(ge=0, le=100_000)] = 0


COMMON = ("kind", "shuffle", "seed", "heldout")


def validate_target_spec(table: dict[str, Any], where: str, prefix: str) -> TargetSpec:
    common = {k: table[k] for k in COMMON if k in table}
    head = parse(_Common, common, where, prefix)
    kind = TARGETS.get(head.kind, f"{where}: key '{prefix}.kind'")
    rest = {k: v for k, v in table.items() if k not in common}
    return TargetSpec(head.kind, parse(kind.Params, rest, where, prefix), head.shuffle, head.seed, head.heldout)


def build_target(
    spec: TargetSpec, data_root: Path | None = None, training_seed: int = 0, exclude: dict[str, Any] | None = None
) -> SimilarityTarget:
    """The target a model trains on: its stimuli (the last ``heldout`` kept out of training), and
    for a shuffle control a permutation of its own per training seed (so the control's seed
    variance includes the permutation's)."""
    target = TARGETS.get(spec.kind).build(spec.params, spec.seed, data_root, Stimuli(spec.heldout, exclude or {}))
    if spec.heldout and target.n - spec.heldout < 2:
        raise BenchError(f"target {spec.kind}: {target.n} stimuli cannot keep {spec.heldout} held out; lower 'heldout'")
    target.n_train = target.n - spec.heldout
    if spec.shuffle != "none":
        base = target
        target = SHUFFLES.get(spec.shuffle)(base, sub_seed(spec.seed, "shuffle", training_seed))
        target.n_train = base.n_train
        target.description["pairs_changed"] = round(changed_fraction(base, target), 4)
    return target
