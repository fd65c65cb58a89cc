"""The evaluation interface. An evaluation is a pure function of (model, images, labels,
parameters, seed): the runner owns I/O and the store."""
from __future__ import annotations

import contextlib
import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from bench.config import as_dict
from bench.registry import Registry
from bench.runtime import Progress, Silent


@dataclass(frozen=True)
class Metric:
    name: str  # e.g. 'noise-gaussian', 'pgd-linf', 'minimal-l2'
    param: float | None  # the level or epsilon; None where there is none
    statistic: str  # 'accuracy', 'median', 'found', ...
    value: float


@dataclass
class EvalOutput:
    metrics: list[Metric] = field(default_factory=list)
    # per-image outcomes: (metric, param, values); 1/0 correctness or a distance
    examples: list[tuple[str, float | None, torch.Tensor]] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)  # how it was measured, shown in reports
    flags: list[str] = field(default_factory=list)  # failed sanity checks, stored beside the numbers


@dataclass
class EvalContext:
    device: torch.device
    seed: int  # the seed of (model, training seed, evaluation kind)
    batch_size: int = 250
    progress: Progress = field(default_factory=Silent)
    # where the images come from, for evaluations that read files aligned with the test set
    dataset: str = ""
    indices: torch.Tensor | None = None  # test-set index of each evaluation image
    data_root: Any = None
    training_seed: int = 0
    # other models of the suite (name -> model of the same training seed), for transfer
    models: Any = None
    cache: dict = field(default_factory=dict)  # shared by the cells of one run (crafted images)


class Evaluation(ABC):
    Params: ClassVar[type]
    kind: ClassVar[str]
    grid: ClassVar[str | None] = None  # the parameter that lists points (levels, epsilons, norms)
    # bump when a code change alters this evaluation's numbers: stored cells of other versions
    # are then recomputed instead of reused
    version: ClassVar[int] = 1
    # parameters that do not change any grid point's numbers, so not part of its seed
    unseeded: ClassVar[tuple[str, ...]] = ()

    def __init__(self, params: Any):
        self.params = params

    def point_seed(self, ctx: "EvalContext", point: Any) -> int:
        """Seed of one grid point: the cell seed, the parameters other than the grid, the point.
        The same point draws the same noise whatever else is on the grid."""
        identity = {k: v for k, v in as_dict(self.params).items() if k != self.grid and k not in self.unseeded}
        return sub_seed(ctx.seed, identity, point)

    def max_images(self) -> int:
        return getattr(self.params, "max_images", 0)

    def sources(self) -> tuple[str, ...]:
        """Other models of the suite this evaluation reads (their checkpoints join the cell key)."""
        return ()

    def work(self, n_images: int) -> int:
        """Units of progress for ``n_images`` (the runner's progress bar total)."""
        return n_images

    @abstractmethod
    def run(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: EvalContext) -> EvalOutput: ...


EVALUATIONS: Registry[type[Evaluation]] = Registry("evaluation")


def sub_seed(seed: int, *parts: Any) -> int:
    """A seed derived from a parent seed and any JSON-able parts (a level, an epsilon): adding a
    level to a grid never changes the numbers of the others."""
    digest = hashlib.sha256(json.dumps([seed, *parts], sort_keys=True).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


@contextlib.contextmanager
def forked_rng(ctx: "EvalContext", seed: int | None = None):
    """A private copy of torch's global RNG (and the CUDA device's), seeded if ``seed`` is given:
    attack libraries draw from, or re-seed, the global RNG, and must not change other results."""
    with torch.random.fork_rng(devices=[ctx.device] if ctx.device.type == "cuda" else []):
        if seed is not None:
            torch.manual_seed(seed)
        yield


@torch.no_grad()
def predict(model: torch.nn.Module, x: torch.Tensor, ctx: EvalContext) -> torch.Tensor:
    out = []
    for s in range(0, len(x), ctx.batch_size):
        out.append(model(x[s:s + ctx.batch_size].to(ctx.device)).argmax(1).cpu())
    return torch.cat(out)
