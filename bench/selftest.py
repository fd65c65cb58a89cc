"""``bench selftest``: one run that says whether a device computes what the CPU computes, runs
every evaluation, is deterministic when asked, and how fast it is (the plan of
../shared/docs/gpu-selftest.md). Every phase runs under its own time box and its own
try/except: a failed phase is recorded, never the end of the run, and one summary closes it.

On CPU it is the dry run: the same code paths at a reduced ``scale``, so a Python error is found
here and not on a lent GPU. The references are the committed CPU checkpoints of the ``ci``
suite (``reports/ci/``); on CPU a device-vs-CPU comparison compares the CPU with itself."""

from __future__ import annotations

import json
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from bench.cards import PROJECT_ROOT
from bench.io import short_reason

CI_REFERENCE = PROJECT_ROOT / "reports" / "ci" / "reference.json"
FIXTURE = PROJECT_ROOT / "reports" / "ci" / "checkpoints" / "ci-none-seed0.pt"
REG_FIXTURE = ("ci-pixel-threshold", PROJECT_ROOT / "reports" / "ci" / "checkpoints" / "ci-pixel-threshold-seed0.pt")
# pass criteria (gpu-selftest.md): relative error of logits (max |a - b| / max |a|) and input gradients
LIMITS = {"fp32": 1e-5, "tf32": 2e-3, "bf16": 2e-2}
GRAD_FACTOR = 10  # gradients go through one more chain of rounding than the logits
ARGMAX_MIN = 0.995


@dataclass
class Phase:
    name: str
    status: str = "ok"  # ok | fail | error | skipped
    seconds: float = 0.0
    box_s: float = 0.0
    figures: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class Context:
    dev: torch.device
    scale: float
    workdir: Path

    def n(self, full: int, least: int = 4) -> int:
        return max(least, int(round(full * self.scale)))


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double().cpu(), b.double().cpu()
    return float((a - b).abs().max() / a.abs().max().clamp_min(1e-30))


def _images(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    from bench.data import load_dataset, to_float

    ds = load_dataset("fmnist-mini")
    return to_float(ds.test_x[:n]), ds.test_y[:n]


# --------------------------------------------------------------------------- phases
def environment(ctx: Context, phase: Phase) -> None:
    """Versions and flags; matmul throughput (bf16 on CUDA) and a device copy's bandwidth."""
    from bench.numerics import device_label, evaluation_numerics, provenance

    phase.figures["device"] = device_label(ctx.dev)
    phase.figures["provenance"] = json.loads(provenance(ctx.dev, evaluation_numerics(ctx.dev)))
    cuda = ctx.dev.type == "cuda"
    size = ctx.n(8192 if cuda else 1024, 64)
    dtype = torch.bfloat16 if cuda else torch.float32
    a = torch.randn(size, size, device=ctx.dev, dtype=dtype)
    from bench.perf import seconds_per_call

    seconds = seconds_per_call(lambda: a @ a, ctx.dev, warmup=2, repeats=5)
    phase.figures[f"matmul_{str(dtype).split('.')[-1]}_tflops"] = 2 * size**3 / seconds / 1e12
    big = torch.empty(ctx.n(2**30 if cuda else 2**26, 2**20) // 4, device=ctx.dev)
    seconds = seconds_per_call(lambda: big.clone(), ctx.dev, warmup=1, repeats=3)
    phase.figures["copy_gb_per_s"] = 2 * big.numel() * 4 / seconds / 1e9
    if cuda and phase.figures["matmul_bfloat16_tflops"] < 700 * ctx.scale:
        phase.notes.append("bf16 matmul below 700 TFLOP/s (an H200 reaches about 790)")


def numerics(ctx: Context, phase: Phase) -> None:
    """Logits and input gradients of a committed checkpoint on the device against CPU fp32, in
    fp32 (TF32 off), TF32 and bf16 autocast; argmax agreement; one regularized step's losses."""
    from bench.train.checkpoint import load_model

    x, y = _images(ctx.n(256, 16))

    def forward(device: torch.device, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
        model = load_model(FIXTURE, str(device))
        xi = x.to(device).clone().requires_grad_(True)  # a fresh leaf: .to() of a CPU tensor is the tensor itself
        tf32 = mode == "tf32"
        if device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=mode == "bf16"):
            logits = model(xi).float()
        F.cross_entropy(logits, y.to(device)).backward()
        if device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        return logits.detach().cpu(), xi.grad.detach().cpu()

    ref_logits, ref_grad = forward(torch.device("cpu"), "fp32")
    modes = ["fp32", "tf32", "bf16"] if ctx.dev.type == "cuda" else ["fp32", "bf16"]
    for mode in modes:
        logits, grad = forward(ctx.dev, mode)
        rel, rel_grad = _relative(ref_logits, logits), _relative(ref_grad, grad)
        agree = float((logits.argmax(1) == ref_logits.argmax(1)).float().mean())
        phase.figures[f"logits_{mode}_rel"] = rel
        phase.figures[f"input_grad_{mode}_rel"] = rel_grad
        phase.figures[f"argmax_{mode}_agreement"] = agree
        limit = LIMITS[mode] if ctx.dev.type == "cuda" or mode == "fp32" else 5e-2  # CPU bf16: a dry run
        if rel > limit or rel_grad > GRAD_FACTOR * limit or agree < ARGMAX_MIN:
            phase.status = "fail"
            phase.notes.append(
                f"{mode}: logits {rel:.2g}, gradients {rel_grad:.2g}, argmax {agree:.3f} (limit {limit:g})"
            )
    step = [regularized_step(torch.device("cpu"), False), regularized_step(ctx.dev, False)]
    if ctx.dev.type == "cuda":
        step.append(regularized_step(ctx.dev, True))
    for k, (ce, sim) in enumerate(step[1:]):
        label = ["fp32", "bf16"][k]
        phase.figures[f"step_{label}_ce_rel"] = abs(ce - step[0][0]) / abs(step[0][0])
        phase.figures[f"step_{label}_sim_rel"] = abs(sim - step[0][1]) / max(abs(step[0][1]), 1e-12)
        limit = 1e-4 if label == "fp32" else 2e-2
        if phase.figures[f"step_{label}_sim_rel"] > limit or phase.figures[f"step_{label}_ce_rel"] > limit:
            phase.status = "fail"
            phase.notes.append(f"regularized step {label}: CE or similarity loss beyond {limit:g} of CPU fp32")


def regularized_step(dev: torch.device, bf16: bool) -> tuple[float, float]:
    """CE and similarity loss of one step of the committed regularized checkpoint: the same
    weights, batch and pairs on any device."""
    from bench.cards import load_model_card
    from bench.targets.card import card_target
    from bench.train.checkpoint import load_model
    from bench.train.regularizer import PairRegularizer

    name, path = REG_FIXTURE
    card = load_model_card(name)
    model = load_model(path, str(dev)).train().requires_grad_(True)
    reg = PairRegularizer(card.regularizer, card_target(card, 0), model, 0, dev)
    x, y = _images(64)
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
        ce = F.cross_entropy(model(x.to(dev)).float(), y.to(dev))
        _, sim = reg.loss(model, reg.draw(1)[0])
    return ce.item(), sim.detach().item()


def determinism(ctx: Context, phase: Phase) -> None:
    """Five training steps twice with the deterministic switch: bit-equal weights."""
    from bench.models import build_model
    from bench.numerics import configure_device
    from bench.perf import Shapes, synthetic_regularizer
    from bench.train.checkpoint import state_hash
    from bench.train.trainer import train_step

    configure_device(ctx.dev, deterministic=True)
    shapes = Shapes(width=ctx.n(64, 8), batch=ctx.n(64, 8))
    hashes = []
    for _ in range(2):
        torch.manual_seed(0)
        model = build_model("resnet18", 10, shapes.width).to(ctx.dev).train()
        reg = synthetic_regularizer("pixel", model, shapes, ctx.dev)
        opt = torch.optim.SGD(list(model.parameters()) + reg.parameters(), lr=0.01, momentum=0.9)
        gen = torch.Generator().manual_seed(1)
        autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=ctx.dev.type == "cuda")
        for _ in range(5):
            xb = torch.rand(shapes.batch, 1, shapes.size, shapes.size, generator=gen).to(ctx.dev)
            yb = torch.randint(0, 10, (shapes.batch,), generator=gen).to(ctx.dev)
            train_step(model, reg, opt, xb, yb, autocast, reg.draw(1)[0])
        hashes.append(state_hash(model.state_dict()))
    phase.figures["weights_hashes"] = hashes
    if hashes[0] != hashes[1]:
        phase.status = "fail"
        phase.notes.append("two deterministic runs gave different weights")


def evaluation(ctx: Context, phase: Phase) -> None:
    """``bench check ci``'s evaluation part on this device: the committed CPU checkpoints
    evaluated here, every number against the CPU reference within the suite's tolerances."""
    from bench.cards import load_suite_card
    from bench.check import failed
    from bench.plan import RunSpec
    from bench.store import ResultStore
    from bench.suite.regression import fixture_changes

    suite = load_suite_card("ci")
    with ResultStore(ctx.workdir / "evaluation.sqlite") as db:
        changes = fixture_changes(RunSpec(suite, ctx.workdir, db.path, str(ctx.dev)), db, CI_REFERENCE).result()
    moved = [c for c in changes if c.delta != 0]
    phase.figures.update(
        numbers=len(changes), moved=len(moved), beyond_tolerance=sum(c.status != "ok" for c in changes)
    )
    phase.figures["largest_delta_over_tolerance"] = max(
        (abs(c.delta) / c.tolerance for c in moved if c.tolerance > 0), default=0.0
    )
    if failed(changes):
        phase.status = "fail"
        phase.notes += [
            f"{c.model} {c.evaluation} {c.param} {c.statistic}: {c.status}" for c in changes if c.status != "ok"
        ][:5]


def smoke(ctx: Context, phase: Phase) -> None:
    """The ``gpu-smoke`` suite on the committed checkpoints: every attack of the ensemble,
    standard AutoAttack and all corruptions; no failed cell, no NaN, the sanity flags listed."""
    import dataclasses

    from bench.cards import load_suite_card
    from bench.plan import RunSpec
    from bench.store import ResultStore
    from bench.suite import run_suite

    suite = load_suite_card("gpu-smoke")
    suite = dataclasses.replace(suite, subset=dataclasses.replace(suite.subset, size=ctx.n(suite.subset.size, 8)))
    pinned = {(c.name, 0): CI_REFERENCE.parent / "checkpoints" / f"{c.name}-seed0.pt" for c in suite.cards}
    with ResultStore(ctx.workdir / "smoke.sqlite") as db:
        summary = run_suite(RunSpec(suite, ctx.workdir, db.path, str(ctx.dev)), db, pinned=pinned, seeds=(0,))
        rows = [db.cell(c.key.digest) for c in summary.cells if c.key is not None]
    flags = [f for r in rows if r for f in json.loads(r.get("flags") or "[]")]
    phase.figures.update(cells=len(rows), evaluated=summary.evaluated, flags=flags)
    missing = len(summary.cells) - sum(r is not None for r in rows)
    if missing or any("NaN" in f for f in flags):
        phase.status = "fail"
        phase.notes.append(f"{missing} cells not stored; NaN flags: {[f for f in flags if 'NaN' in f][:3]}")


COMPILED = "reduce-overhead"  # the compile mode the self-test times: CUDA graphs remove launch costs
# issue 13's goals on one H200: seconds per 40-epoch model, minutes of paper-table1 evaluation per model
TRAINING_GOAL_S = {"baseline": 60, "neural": 150}
EVALUATION_GOAL_MIN = 5


def goal_notes(figures: dict) -> list[str]:
    """The perf figures against issue 13's goals: estimates from step rates, recorded, not pass/fail."""
    notes = []
    for k, goal in TRAINING_GOAL_S.items():
        best = min(figures[f"train_{k}_40_epochs_s"], figures.get(f"train_{k}_compiled_40_epochs_s", float("inf")))
        notes.append(f"{k}: 40 epochs in about {best:.0f} s at the best step rate (goal <= {goal} s)")
    minutes = figures["paper_table1_evaluation_min_per_model_upper_estimate"]
    notes.append(f"paper-table1 evaluation: at most {minutes:.1f} min per model (goal <= {EVALUATION_GOAL_MIN})")
    return notes


def perf(ctx: Context, phase: Phase) -> None:
    """``bench perf``'s table at the paper's shapes (scaled in a dry run), whether a compiled
    step (BENCH_COMPILE) pays on CUDA, and how much more a device trains with several models at
    once (one process each: 2 and 4 on CUDA, 2 on CPU)."""
    from bench.perf import FLOP_RATIO, Shapes, measure, model_seconds

    cuda = ctx.dev.type == "cuda"  # on CPU each step compiles for about a minute: not for a dry run
    shapes = Shapes(width=ctx.n(64, 8), batch=ctx.n(64, 8))
    counts = (2, 4) if cuda else (2,)
    report = measure(
        shapes,
        ctx.dev,
        repeats=3,
        n_images=ctx.n(32, 8),
        compile=COMPILED if cuda else "",
        compiled_kinds=tuple(TRAINING_GOAL_S),
        processes=counts,
    )
    train = report.train
    for k, rate in train.items():
        phase.figures[f"train_{k}_img_per_s"] = rate.per_second
        if k != "baseline":
            phase.figures[f"train_{k}_cost_ratio"] = train["baseline"].per_second / rate.per_second
            phase.figures[f"train_{k}_flop_ratio"] = FLOP_RATIO[k]
    for rate in report.evaluations:
        phase.figures[rate.what.replace(" ", "_")] = rate.per_second
        if rate.solver_share is not None:
            phase.figures["brendel_bethge_cpu_solver_share"] = rate.solver_share
    phase.figures["paper_table1_training_h_estimate"] = report.training_s / 3600
    estimate = report.evaluation
    phase.figures["paper_table1_evaluation_min_per_model_upper_estimate"] = estimate.seconds_per_model / 60
    phase.figures["paper_table1_evaluation_shares"] = estimate.shares()
    if estimate.not_estimated:
        phase.notes.append(f"not in the evaluation estimate: {', '.join(estimate.not_estimated)}")
    for k in TRAINING_GOAL_S:
        phase.figures[f"train_{k}_40_epochs_s"] = model_seconds(train[k], shapes)
    for k, rate in report.compiled.items():
        phase.figures[f"train_{k}_compiled_speedup"] = rate.per_second / train[k].per_second
        phase.figures[f"train_{k}_compiled_40_epochs_s"] = model_seconds(rate, shapes)
        phase.figures[f"train_{k}_compile_s"] = rate.compile_s
        phase.figures[f"train_{k}_cudagraph_skips"] = rate.cudagraph_skips
    if cuda:
        phase.notes += goal_notes(phase.figures)
    else:
        phase.notes.append(f"the compiled step ({COMPILED}) is timed on CUDA only")
    for n, (_, speedup) in zip(counts, report.concurrency):
        phase.figures[f"train_baseline_{n}_processes_speedup"] = speedup


def quick(ctx: Context, phase: Phase) -> None:
    """``bench run quick`` trained on this device against the published CPU leaderboard:
    clean accuracy per model within 3 points (means over seeds)."""
    import pandas as pd

    from bench.cards import load_suite_card
    from bench.plan import RunSpec
    from bench.report.collect import collect, csv_table
    from bench.store import ResultStore
    from bench.suite import run_suite

    suite = load_suite_card("quick")
    with ResultStore(ctx.workdir / "quick.sqlite") as db:
        summary = run_suite(RunSpec(suite, ctx.workdir, db.path, str(ctx.dev)), db)
        here = csv_table(collect(suite, db, summary.cells).results)
    cpu = pd.read_csv(PROJECT_ROOT / "reports" / "quick" / "results.csv")

    def clean(r: pd.DataFrame) -> pd.Series:
        return r[r["evaluation"] == "clean"].groupby("model")["value"].mean()

    delta = (clean(here) - clean(cpu)).abs()
    phase.figures["clean_abs_delta_pp"] = {m: round(v * 100, 2) for m, v in delta.items()}
    if (delta > 0.03).any():
        phase.status = "fail"
        phase.notes.append("clean accuracy more than 3 points from the CPU leaderboard")


# name -> (function, time box in seconds at scale 1, CUDA only by default)
PHASES: dict[str, tuple[Callable[[Context, Phase], None], float, bool]] = {
    "environment": (environment, 15, False),
    "numerics": (numerics, 45, False),
    "determinism": (determinism, 20, False),
    "evaluation": (evaluation, 50, False),
    "smoke": (smoke, 55, False),
    "perf": (perf, 200, False),  # estimated: 30 s for 1, 2 and 4 trainings at once, 70 s compiling two steps
    "quick": (quick, 60, True),
}


def run_selftest(
    dev: torch.device, scale: float = 1.0, phases: list[str] | None = None, log: Callable[[str], None] = print
) -> list[Phase]:
    names = phases or [n for n, (_, _, cuda_only) in PHASES.items() if dev.type == "cuda" or not cuda_only]
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-selftest-") as tmp:
        ctx = Context(dev, scale, Path(tmp))
        for name in names:
            fn, box, _ = PHASES[name]
            phase = Phase(name, box_s=box)
            log(f"selftest: {name} ...")
            t0 = time.perf_counter()
            try:
                fn(ctx, phase)
            except Exception as exc:  # recorded; the next phase still runs
                phase.status = "error"
                phase.notes.append(f"{type(exc).__name__}: {short_reason(exc)}")
                phase.figures["traceback"] = traceback.format_exc(limit=4)
            phase.seconds = time.perf_counter() - t0
            if phase.seconds > box and dev.type == "cuda":
                phase.notes.append(f"over its time box ({phase.seconds:.0f} s > {box:.0f} s)")
            log(f"selftest: {name} {phase.status} ({phase.seconds:.1f} s)")
            results.append(phase)
    return results


def summary_json(phases: list[Phase]) -> str:
    return json.dumps([asdict(p) for p in phases], indent=1, default=str)
