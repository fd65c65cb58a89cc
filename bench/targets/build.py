"""Target registry and the ``[regularizer.target]`` table of a zoo card.

A target kind is one class with a ``Params`` dataclass (its own card keys) and a ``build``
method; the shuffle controls wrap any of them."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Protocol

from pydantic import ConfigDict

from bench.config import parse
from bench.registry import Registry
from bench.targets.base import ShuffledEntries, ShuffledIds, SimilarityTarget


class TargetKind(Protocol):
    Params: type

    @staticmethod
    def build(params: Any, seed: int, data_root: Path | None) -> SimilarityTarget: ...


TARGETS: Registry[TargetKind] = Registry("target")
SHUFFLES: Registry[Callable[[SimilarityTarget, int], SimilarityTarget]] = Registry("shuffle")
SHUFFLES.register("ids")(ShuffledIds)
SHUFFLES.register("entries")(ShuffledEntries)


@dataclass(frozen=True)
class TargetSpec:
    kind: str
    params: Any  # the kind's Params dataclass
    shuffle: Literal["none", "ids", "entries"] = "none"
    seed: int = 0  # picks the stimuli and the shuffle permutation


@dataclass(frozen=True)
class _Common:
    __pydantic_config__ = ConfigDict(extra="allow")
    kind: str
    shuffle: Literal["none", "ids", "entries"] = "none"
    seed: int = 0


def validate_target_spec(table: dict[str, Any], where: str, prefix: str) -> TargetSpec:
    common = {k: table[k] for k in ("kind", "shuffle", "seed") if k in table}
    head = parse(_Common, common, where, prefix)
    kind = TARGETS.get(head.kind, f"{where}: key '{prefix}.kind'")
    rest = {k: v for k, v in table.items() if k not in common}
    return TargetSpec(head.kind, parse(kind.Params, rest, where, prefix), head.shuffle, head.seed)


def build_target(spec: TargetSpec, data_root: Path | None = None) -> SimilarityTarget:
    target = TARGETS.get(spec.kind).build(spec.params, spec.seed, data_root)
    if spec.shuffle != "none":
        target = SHUFFLES.get(spec.shuffle)(target, spec.seed)
    return target
