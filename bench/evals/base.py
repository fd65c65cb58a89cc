"""The evaluation interface. An evaluation is a pure function of (model, images, labels,
parameters, seed): the runner owns I/O and the store. Each evaluation also declares how its
numbers are reported (``report``), so the report code never needs to know it by name."""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, final

import torch

from bench.evals import sanity
from bench.evals.reporting import Curve, MetricId, ReportSpec
from bench.registry import Registry
from bench.runtime import Progress, Silent
from bench.seeds import sub_seed


@dataclass(frozen=True)
class Metric:
    metric: MetricId
    param: float | None  # the level or epsilon; None where there is none
    statistic: str  # 'accuracy', 'median', 'found', 'wins', ...
    value: float
    attack: str = ""  # the ensemble attack a per-attack statistic belongs to


@dataclass(frozen=True)
class Example:
    """Per-image values behind a statistic: 1/0 correctness ('accuracy'), a distance
    ('distance'), the winning attack ('winner'), a per-image mean ('mean accuracy')."""

    metric: MetricId
    param: float | None
    statistic: str
    values: torch.Tensor
    attack: str = ""


@dataclass
class EvalOutput:
    metrics: list[Metric] = field(default_factory=list)
    examples: list[Example] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)  # how it was measured, shown in reports
    flags: list[str] = field(default_factory=list)  # failed sanity checks, stored beside the numbers

    def accuracy(self, metric: MetricId, param: float | None, correct: torch.Tensor) -> float:
        """One accuracy point: its number and its per-image correctness; returns the accuracy."""
        value = correct.double().mean().item()
        self.metrics.append(Metric(metric, param, "accuracy", value))
        self.examples.append(Example(metric, param, "accuracy", correct.float()))
        return value

    def points(self, metric: MetricId) -> list[tuple[float, float]]:
        """(param, accuracy) of a curve, in the order they were added."""
        return [(m.param, m.value) for m in self.metrics if m.metric == metric and m.statistic == "accuracy"]


@dataclass
class EvalContext:
    """What every evaluation gets. What only some need (files aligned with the test set, the
    suite's other models) is a resource the evaluation declares in ``needs``."""

    device: torch.device
    seed: int  # the suite's seed for perturbation draws: the same for every model and training seed
    batch_size: int = 250
    progress: Progress = field(default_factory=Silent)
    indices: torch.Tensor | None = None  # test-set index of each evaluation image
    predictions: torch.Tensor | None = None  # the model's clean predictions (computed once per model seed)
    resources: dict[str, Any] = field(default_factory=dict)

    def image_ids(self, x: torch.Tensor) -> torch.Tensor:
        """The test-set index of each image (what seeds its perturbation draws)."""
        if self.indices is None:
            return torch.arange(len(x))
        if len(self.indices) != len(x):
            raise ValueError(f"{len(self.indices)} image indices for {len(x)} images")
        return self.indices

    def clean_predictions(self, model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        """The runner computes them once per model seed and subset; a context without them (a
        test, a single evaluation) computes them here, never caching (a context may serve
        several models)."""
        return self.predictions if self.predictions is not None else predict(model, x, self)

    def clean_correct(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.clean_predictions(model, x) == y

    def resource(self, name: str) -> Any:
        if name not in self.resources:
            raise RuntimeError(f"resource {name!r} was not provided; declare it in the evaluation's 'needs'")
        return self.resources[name]


@dataclass(frozen=True)
class SourceModels:
    """The suite's other models of the same training seed (transfer), and a cache the cells of
    one run share (crafted images)."""

    load: Any  # name -> eval-mode model
    training_seed: int
    cache: dict


@dataclass(frozen=True)
class DataFiles:
    """Where the evaluated dataset lives, for evaluations that read files aligned with its test set."""

    dataset: str
    data_root: Any


EVALUATIONS: Registry[type[Evaluation]] = Registry("evaluation", stamp="kind")


class Evaluation(ABC):
    """Its ``kind`` is the name it is registered under (bench.evals), written once there."""

    Params: ClassVar[type]
    kind: ClassVar[str]
    grid: ClassVar[str | None] = None  # the parameter that lists points (levels, epsilons, norms)
    # bump when a code change alters this evaluation's numbers: stored cells of other versions
    # are then recomputed instead of reused
    version: ClassVar[int] = 1
    needs: ClassVar[frozenset[str]] = frozenset()  # resources beyond EvalContext: 'source_models', 'data_files'

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        EVALUATIONS.stamp_name(cls)  # imported directly (a test), not through the registry

    def __init__(self, params: Any):
        self.params = params

    @staticmethod
    def prepare(table: dict) -> dict:
        """A suite card's table for this evaluation (without 'kind') before it is validated into
        ``Params``: the place to accept a friendlier card layout."""
        return table

    @property
    def stream(self) -> str:
        """What names this evaluation's random stream (with the grid point): its kind, plus what
        tells two of its kind apart (a noise type, a norm). Not the model, not the training seed."""
        return self.kind

    def point_seed(self, ctx: EvalContext, point: Any) -> int:
        """Seed of one grid point: common to every model and training seed of the suite (common
        random numbers), and independent of the rest of the grid."""
        return sub_seed(ctx.seed, self.stream, point)

    def max_images(self) -> int:
        return getattr(self.params, "max_images", 0)

    def sources(self) -> tuple[str, ...]:
        """Other models of the suite this evaluation reads (their checkpoints join the cell key)."""
        return ()

    def work(self, n_images: int) -> int:
        """Units of progress for ``n_images`` (the runner's progress bar total)."""
        return n_images

    def attack_iterations(self) -> dict[str, int] | None:
        """Per image, the iterations each attack runs over its full schedule (``bench perf``'s
        evaluation-time estimate); None for evaluations that are not estimated."""
        return None

    @abstractmethod
    def report(self) -> ReportSpec:
        """The curves and summaries this evaluation's numbers form, and how they are shown."""

    @abstractmethod
    def run(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: EvalContext) -> EvalOutput: ...


class CurveEvaluation(Evaluation):
    """Accuracy over a grid (noise levels, epsilons). The final ``run`` owns the loop, the
    accounting (each point's accuracy and per-image correctness, in grid order) and the curve's
    sanity flags, as Foolbox's base ``__call__`` owns its loop: a subclass says what is correct at
    one point (``at``), and may hold state for the whole grid (``session``) and add what follows
    the curve (``finish``)."""

    monotone: ClassVar[bool] = True  # accuracy may not rise along the grid (a sanity flag if it does)

    @property
    def metric(self) -> MetricId:
        raise NotImplementedError

    def notes(self) -> dict[str, Any]:
        return {}

    @contextlib.contextmanager
    def session(self, model, x: torch.Tensor, y: torch.Tensor, ctx: EvalContext):
        """What the points share (a wrapped model, an attack, a log handler); yielded to ``at``."""
        yield None

    @abstractmethod
    def at(self, point: float, state: Any, model, x: torch.Tensor, y: torch.Tensor, ctx: EvalContext):
        """Per-image correctness at one grid point, or (correctness, further metrics of the point)."""

    def finish(self, state: Any, model, x: torch.Tensor, y: torch.Tensor, ctx: EvalContext, out: EvalOutput) -> None:
        """Numbers and flags after the curve (a sanity probe, a summary of the grid)."""

    @final
    def run(self, model, x: torch.Tensor, y: torch.Tensor, ctx: EvalContext) -> EvalOutput:
        out = EvalOutput(notes=self.notes())
        with self.session(model, x, y, ctx) as state:
            for point in getattr(self.params, self.grid):
                result = self.at(point, state, model, x, y, ctx)
                correct, extra = result if isinstance(result, tuple) else (result, [])
                out.accuracy(self.metric, point, correct)
                out.metrics += extra
            clean = ctx.clean_correct(model, x, y).double().mean().item()
            points = out.points(self.metric)
            out.flags += sanity.accuracy_curve_flags(self.metric.label, points, clean, monotone=self.monotone)
            self.finish(state, model, x, y, ctx, out)
        return out


class EpsilonCurveEvaluation(CurveEvaluation):
    """An attack measured as robust accuracy against epsilon in one norm (PGD, AutoAttack): its
    metric, random stream and report follow from a name prefix and the card's norm."""

    grid = "epsilons"
    metric_prefix: ClassVar[str]
    plot: ClassVar[str]  # the figure its curve is drawn in
    title: ClassVar[str]
    robustbench_linf: ClassVar[
        tuple[str, ...]
    ]  # the RobustBench fields its L-inf curve fills (bench.evals.reporting.Curve)

    @property
    def metric(self) -> MetricId:
        return MetricId(f"{self.metric_prefix}-{self.params.norm}")

    @property
    def stream(self) -> str:
        return self.metric.name

    def report(self) -> ReportSpec:
        norm = self.params.norm
        curve = Curve(
            self.metric,
            f"{norm} epsilon ([0,1] scale)",
            self.plot,
            self.title,
            headline=True,
            robustbench=self.robustbench_linf if norm == "linf" else (),
        )
        return ReportSpec(curves=(curve,))


@contextlib.contextmanager
def forked_rng(ctx: EvalContext, seed: int | None = None):
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
        out.append(model(x[s : s + ctx.batch_size].to(ctx.device)).argmax(1).cpu())
    return torch.cat(out)
