"""``bench perf``: what this machine does per second (training steps of the three regularizer
kinds, evaluation per attack) and what a GPU-sized suite would therefore cost here.

Synthetic data and random targets of the real shapes: throughput does not depend on the
values, and nothing has to be downloaded. The training step is the trainer's own
(``bench.train.trainer.train_step``); the evaluations are the registered classes."""

from __future__ import annotations

import contextlib
import multiprocessing
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from bench.cards import RegularizerSpec
from bench.errors import BenchError
from bench.evals.base import EvalContext
from bench.models import build_model
from bench.targets.base import CosineTarget, unit_rows
from bench.train.regularizer import NoRegularizer, PairRegularizer
from bench.train.speed import TrainingSpeed
from bench.train.trainer import step_losses, train_step

# FLOPs of a regularized step relative to a baseline step at k = 16 pairs and batch 64 (counted for
# these shapes): two pair halves through the trunk, 32 x 32 stimuli (pixel) or 36 x 64 (neural)
FLOP_RATIO = {"pixel": 1.50, "neural": 2.16}
STIMULUS_SHAPE = {"pixel": None, "neural": (36, 64)}  # None: the images' own size


@dataclass(frozen=True)
class Shapes:
    arch: str = "resnet18"
    width: int = 64
    size: int = 32  # grayscale CIFAR-10
    batch: int = 64
    pairs: int = 16
    train_images: int = 49_500  # CIFAR-10's 50,000 less the 1% validation split
    epochs: int = 40


@dataclass(frozen=True)
class Rate:
    what: str
    per_second: float  # images per second
    compile_s: float = 0.0  # a compiled step's first call: compilation (and tracing)
    solver_share: float | None = None  # of an evaluation's time, Brendel-Bethge's CPU solver (numba)
    attack: str = ""  # the one attack an evaluation case ran ...
    iteration_s: float = 0.0  # ... and its seconds per image and iteration
    cudagraph_skips: int = 0  # a compiled step's graphs that CUDA graphs refused (inductor logs why)


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def seconds_per_call(
    fn, dev: torch.device, warmup: int = 2, repeats: int = 5, ready: Callable[[], object] = lambda: None
) -> float:
    """``ready`` is called once warm, before the clock starts (concurrent processes meet there)."""
    for _ in range(warmup):
        fn()
    _sync(dev)
    ready()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    _sync(dev)
    return (time.perf_counter() - t0) / repeats


def synthetic_regularizer(
    kind: str, model, shapes: Shapes, dev: torch.device, memory_format: torch.memory_format = torch.contiguous_format
) -> NoRegularizer:
    if kind == "baseline":
        return NoRegularizer()
    h, w = STIMULUS_SHAPE[kind] or (shapes.size, shapes.size)
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(1000, 1, h, w, generator=gen)
    target = CosineTarget(images, unit_rows(torch.randn(1000, 64, generator=gen)), {"kind": "perf"})
    spec = RegularizerSpec(alpha=1.0, target=None, pairs_per_step=shapes.pairs)
    return PairRegularizer(spec, target, model, 0, dev, memory_format)


def training_step(kind: str, shapes: Shapes, dev: torch.device, compile: str = "") -> Callable[[], torch.Tensor]:
    """One trainer step of this kind at these shapes, with the trainer's device settings."""
    speed = TrainingSpeed.for_device(dev, compile=compile)
    torch.manual_seed(0)
    model = build_model(shapes.arch, 10, shapes.width).to(dev)
    if speed.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    reg = synthetic_regularizer(kind, model, shapes, dev, speed.memory_format)
    opt = torch.optim.SGD(
        list(model.parameters()) + reg.parameters(), lr=0.01, momentum=0.9, **speed.optimizer_options()
    )
    x = torch.rand(shapes.batch, 1, shapes.size, shapes.size, device=dev).contiguous(memory_format=speed.memory_format)
    y = torch.randint(0, 10, (shapes.batch,), device=dev)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=dev.type == "cuda")
    pairs = None if (draws := reg.draw(1)) is None else draws[0]  # the trainer draws them once per epoch
    losses = speed.compiled(step_losses)
    return lambda: train_step(model, reg, opt, x, y, autocast, pairs, losses)


def training_rate(
    kind: str,
    shapes: Shapes,
    dev: torch.device,
    repeats: int = 5,
    ready: Callable[[], object] = lambda: None,
    compile: str = "",
) -> Rate:
    """Steady-state images/s of the trainer's step. Compiled, the first call (compilation) is
    timed on its own and the warm-up is longer: CUDA graphs are recorded on a later call."""
    skips = torch._dynamo.utils.counters["inductor"]
    skipped_before = skips["cudagraph_skips"]
    step = training_step(kind, shapes, dev, compile)
    with TrainingSpeed.for_device(dev).backends():
        first = 0.0
        if compile:
            t0 = time.perf_counter()
            step()
            _sync(dev)
            first = time.perf_counter() - t0
        seconds = seconds_per_call(step, dev, warmup=3 if compile else 2, repeats=repeats, ready=ready)
    what = f"train {kind}" + (f", compiled ({compile})" if compile else "")
    return Rate(what, shapes.batch / seconds, first, cudagraph_skips=skips["cudagraph_skips"] - skipped_before)


def _concurrent_worker(kind: str, shapes: Shapes, device: str, repeats: int, threads: int, barrier, results) -> None:
    try:
        torch.set_num_threads(threads)
        # every process is warm when it reaches the barrier: the timed steps overlap
        results.put(training_rate(kind, shapes, torch.device(device), repeats, ready=barrier.wait).per_second)
    except BaseException as exc:
        barrier.abort()
        results.put(f"{type(exc).__name__}: {exc}")


def concurrent_training_rate(
    kind: str, shapes: Shapes, dev: torch.device, processes: int, repeats: int = 10, timeout: float = 600
) -> Rate:
    """Images/s of ``processes`` trainings at once on this device, one process each: how a
    suite's training phase shares a GPU (``bench run --executor local --workers N``). On CPU the
    threads are split between the processes."""
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(processes), ctx.Queue()
    threads = max(1, torch.get_num_threads() // processes) if dev.type == "cpu" else 1
    args = (kind, shapes, str(dev), repeats, threads, barrier, results)
    workers = [ctx.Process(target=_concurrent_worker, args=args, daemon=True) for _ in range(processes)]
    for w in workers:
        w.start()
    rates, deadline = [], time.monotonic() + timeout
    try:
        while len(rates) < processes:
            try:
                rates.append(results.get(timeout=1.0))
            except queue.Empty:
                dead = [w.exitcode for w in workers if w.exitcode not in (None, 0)]
                if dead or time.monotonic() > deadline:
                    raise BenchError(
                        f"bench perf: a training process {'died' if dead else 'timed out'} "
                        f"(exit codes {dead}); run it with one process to see its error"
                    ) from None
    finally:
        for w in workers:
            w.join(timeout=5)
            if w.is_alive():
                w.kill()
    failed = [r for r in rates if isinstance(r, str)]
    if failed:
        raise BenchError(f"bench perf: a training process failed: {failed[0]}")
    return Rate(f"train {kind}, {processes} processes at once", sum(rates))


def concurrency_speedups(kind: str, shapes: Shapes, dev: torch.device, counts: list[int]) -> list[tuple[Rate, float]]:
    """(rate, its speedup over one process) for each number of trainings at once; one process is measured once."""
    one = concurrent_training_rate(kind, shapes, dev, 1)
    rates = [one if n == 1 else concurrent_training_rate(kind, shapes, dev, n) for n in counts]
    return [(rate, rate.per_second / one.per_second) for rate in rates]


@contextlib.contextmanager
def brendel_bethge_solver_clock():
    """Yields a list whose one number grows by the seconds Foolbox's Brendel-Bethge attacks spend
    in their per-image trust-region solver: numba code run on the CPU, one image at a time, while
    the device waits. Each attack built in the block gets a timing proxy for its solver."""
    from bench.evals.attacks import foolbox

    bb = foolbox().attacks.brendel_bethge
    spent = [0.0]

    class TimedSolver:
        def __init__(self, inner):
            self.inner = inner

        def solve(self, *args):
            t0 = time.perf_counter()
            try:
                return self.inner.solve(*args)
            finally:
                spent[0] += time.perf_counter() - t0

    base = bb.BrendelBethgeAttack
    original = base.__init__

    def timed_init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self._optimizer = TimedSolver(self._optimizer)

    base.__init__ = timed_init
    try:
        yield spent
    finally:
        base.__init__ = original


# what bench perf times per evaluation: one epsilon or level, short attack schedules
EVALUATION_CASES = {
    "noise gaussian, 1 level": {"kind": "noise", "noise": "gaussian", "levels": [0.1]},
    "pgd linf, 1 eps x 20 steps": {"kind": "pgd", "norm": "linf", "epsilons": [0.01], "sanity_epsilon": 0},
    "minimal l2, fmn 50 steps": {"kind": "minimal", "norms": ["l2"], "attacks": ["fmn"], "fmn": {"steps": 50}},
    "minimal l2, deepfool 20 steps": {
        "kind": "minimal", "norms": ["l2"], "attacks": ["deepfool"], "deepfool": {"steps": 20},
    },
    "minimal linf, brendel-bethge 20 steps": {
        "kind": "minimal", "norms": ["linf"], "attacks": ["brendel-bethge"], "brendel-bethge": {"steps": 20},
    },
    "minimal l2, boundary 100 steps": {
        "kind": "minimal", "norms": ["l2"], "attacks": ["boundary"], "boundary": {"steps": 100},
    },
    "minimal l2, hopskipjump 2 steps": {
        "kind": "minimal", "norms": ["l2"], "attacks": ["hopskipjump"], "hopskipjump": {"steps": 2},
    },
}  # fmt: skip


def evaluation_rates(shapes: Shapes, dev: torch.device, n_images: int = 32) -> list[Rate]:
    """Images per second of each evaluation in EVALUATION_CASES (after a warm-up call: numba's
    compilation is not timed), with the share of Brendel-Bethge's CPU solver in its time. The
    refining attacks start from the nearest image of another predicted class."""
    from bench.config import parse
    from bench.evals import EVALUATIONS

    torch.manual_seed(0)
    model = build_model(shapes.arch, 10, shapes.width).to(dev).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    # an untrained network gives nearly every input the same class, so the refining attacks would
    # find no start of another class and time nothing; centring its logits on random images
    # spreads its predictions over the classes, as a trained model's are
    model.head.bias -= model(torch.rand(256, 1, shapes.size, shapes.size, device=dev)).mean(0)
    x = torch.rand(n_images, 1, shapes.size, shapes.size, device=dev)
    y = model(x).argmax(1)  # every image clean-correct: the attacks have work on all of them
    ctx = EvalContext(dev, 0)
    rates = []
    for what, table in EVALUATION_CASES.items():
        cls = EVALUATIONS.get(table["kind"])
        evaluation = cls(parse(cls.Params, cls.prepare({k: v for k, v in table.items() if k != "kind"}), "bench perf"))
        evaluation.run(model, x, y, ctx)  # warm-up
        with brendel_bethge_solver_clock() as solver:
            seconds = seconds_per_call(lambda e=evaluation: e.run(model, x, y, ctx), dev, warmup=0, repeats=1)
        share = solver[0] / seconds if "brendel-bethge" in table.get("attacks", []) else None
        ((attack, iterations),) = (evaluation.attack_iterations() or {"": 0}).items()
        per_iteration = seconds / n_images / iterations if iterations else 0.0
        rates.append(
            Rate(f"evaluate {what}", n_images / seconds, solver_share=share, attack=attack, iteration_s=per_iteration)
        )
    return rates


SAME_COST = {"bim": "pgd"}  # an attack timed as another one: the same gradient step


@dataclass(frozen=True)
class EvaluationEstimate:
    seconds: dict[str, float]  # per 'evaluation/attack', for one model seed over the suite's subset
    not_estimated: tuple[str, ...]  # evaluations and attacks without a measured rate

    @property
    def seconds_per_model(self) -> float:
        return sum(self.seconds.values())

    def shares(self) -> str:
        """The parts' shares, largest first: '63% minimal/hopskipjump, ...'."""
        total = self.seconds_per_model or 1.0
        return ", ".join(f"{v / total:.0%} {k}" for k, v in sorted(self.seconds.items(), key=lambda kv: -kv[1]))


def evaluation_estimate(suite, rates: list[Rate]) -> EvaluationEstimate:
    """Seconds to evaluate one model seed of ``suite`` at the measured per-iteration rates, every
    attack running its whole schedule on every image: an upper bound (attacks stop early, and the
    ensemble's later attacks skip images they cannot improve), for the model measured here."""
    from bench.evals import EVALUATIONS
    from bench.plan import suite_evaluations

    per_iteration = {r.attack: r.iteration_s for r in rates if r.attack}
    seconds, missing = {}, []
    for spec in suite_evaluations(suite):
        iterations = EVALUATIONS.get(spec.kind)(spec.params).attack_iterations()
        if iterations is None:
            missing += [spec.kind] if spec.kind != "clean" else []  # clean accuracy: one forward pass
            continue
        for attack, n in iterations.items():
            cost, part = per_iteration.get(SAME_COST.get(attack, attack)), f"{spec.kind}/{attack}"
            if cost is None:
                missing.append(part)
            else:
                images = min(suite.subset.size, getattr(spec.params, "max_images", 0) or suite.subset.size)
                seconds[part] = seconds.get(part, 0.0) + n * cost * images
    return EvaluationEstimate(seconds, tuple(missing))


def paper_table1_estimate(train: dict[str, Rate], shapes: Shapes, seeds: int = 5) -> float:
    """Seconds to train paper-table1's models here (baseline, shuffle, pixel-threshold, neural
    x seeds) at the measured rates, one model at a time."""
    kinds = ["baseline", "pixel", "pixel", "neural"]  # the shuffled control costs a pixel step
    return seeds * sum(model_seconds(train[k], shapes) for k in kinds)


def model_seconds(rate: Rate, shapes: Shapes) -> float:
    """Seconds to train one model of the paper's schedule (its epochs over its images) at ``rate``."""
    return shapes.train_images * shapes.epochs / rate.per_second


KINDS = ("baseline", "pixel", "neural")


@dataclass
class PerfReport:
    """What ``bench perf`` prints and the self-test records: one measurement, two renderings."""

    shapes: Shapes
    train: dict[str, Rate]  # per kind, eager
    compiled: dict[str, Rate]  # per kind timed compiled (none unless asked)
    evaluations: list[Rate]
    concurrency: list[tuple[Rate, float]]  # (N baseline trainings at once, speedup over one)
    training_s: float  # paper-table1's 20 trainings, one at a time
    evaluation: EvaluationEstimate  # paper-table1's evaluation per model seed, an upper bound


def measure(
    shapes: Shapes,
    dev: torch.device,
    *,
    repeats: int = 5,
    n_images: int = 32,
    compile: str = "",
    compiled_kinds: tuple[str, ...] = KINDS,
    processes: tuple[int, ...] = (),
) -> PerfReport:
    from bench.cards import load_suite_card

    training_rate("baseline", shapes, dev, repeats=1)  # first use of the kernels (allocation, primitives)
    train = {k: training_rate(k, shapes, dev, repeats=repeats) for k in KINDS}
    compiled = (
        {k: training_rate(k, shapes, dev, repeats=repeats, compile=compile) for k in compiled_kinds} if compile else {}
    )
    evaluations = evaluation_rates(shapes, dev, n_images)
    concurrency = concurrency_speedups("baseline", shapes, dev, list(processes)) if processes else []
    return PerfReport(
        shapes,
        train,
        compiled,
        evaluations,
        concurrency,
        paper_table1_estimate(train, shapes),
        evaluation_estimate(load_suite_card("paper-table1"), evaluations),
    )


def perf_text(report: PerfReport, shapes: Shapes) -> str:
    """What ``bench perf`` prints: the rates, and paper-table1's training and evaluation time."""
    from tabulate import tabulate

    train = report.train
    notes = {
        k: f"step time {train['baseline'].per_second / train[k].per_second:.2f}x baseline (FLOP ratio {ratio:.2f})"
        for k, ratio in FLOP_RATIO.items()
    }
    rows = [[r.what, f"{r.per_second:,.0f}", notes.get(k, "")] for k, r in train.items()]
    for k, rate in report.compiled.items():
        rows.append(
            [
                rate.what,
                f"{rate.per_second:,.0f}",
                f"{rate.per_second / train[k].per_second:.2f}x eager; first step {rate.compile_s:.0f} s",
            ]
        )
    for rate, speedup in report.concurrency:
        rows.append([rate.what, f"{rate.per_second:,.0f}", f"{speedup:.2f}x one process"])
    for r in report.evaluations:
        solver = "" if r.solver_share is None else f"; {r.solver_share:.0%} of it in the CPU solver"
        rows.append([r.what, f"{r.per_second:,.1f}", f"32 images{solver}"])
    lines = [tabulate(rows, headers=["what", "images/s", "note"], tablefmt="simple")]
    lines.append(
        f"paper-table1 training here (20 models x {shapes.epochs} epochs x {shapes.train_images:,} images, "
        f"one at a time): about {report.training_s / 3600:.1f} h"
    )
    estimate = report.evaluation
    lines.append(
        f"paper-table1 evaluation here: at most about {estimate.seconds_per_model / 3600:.1f} h per model seed "
        "(every attack's full schedule on all 1,000 images, at the rates above"
        + (f"; not estimated: {', '.join(estimate.not_estimated)}" if estimate.not_estimated else "")
        + f"): {estimate.shares()}"
    )
    return "\n".join(lines)
