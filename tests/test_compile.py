"""The compiled training step (BENCH_COMPILE, CUDA only in training; timed by bench perf
--compile and the self-test): what it computes is what the eager step computes, and where it
may not be used it is refused before anything is written."""

from __future__ import annotations

import pytest
import torch

from bench.cards import RegularizerSpec, load_model_card
from bench.errors import BenchError
from bench.models import build_model
from bench.targets.base import CosineTarget, unit_rows
from bench.train.regularizer import PairRegularizer
from bench.train.speed import COMPILE_ENV, TrainingSpeed, training_compile_mode
from bench.train.trainer import step_losses, train, train_step
from tests.conftest import run_cli

CPU, CUDA = torch.device("cpu"), torch.device("cuda")  # a device object needs no GPU


def _regularized(pair_bn: str):
    """A width-4 ResNet18 with a pixel-like target whose stimuli leave BatchNorm's statistics
    alone (pair_bn = classification: the step changes module attributes, a side effect to trace)."""
    gen = torch.Generator().manual_seed(0)
    target = CosineTarget(torch.rand(64, 1, 16, 16, generator=gen), unit_rows(torch.randn(64, 8, generator=gen)), {})
    torch.manual_seed(0)
    model = build_model("resnet18", 10, 4).train()
    spec = RegularizerSpec(alpha=1.0, target=None, pairs_per_step=4, pair_bn=pair_bn)
    reg = PairRegularizer(spec, target, model, 0, CPU)
    opt = torch.optim.SGD(list(model.parameters()) + reg.parameters(), lr=0.05, momentum=0.9)
    return model, reg, opt


def _three_steps(compile: str, pair_bn: str = "classification") -> dict[str, torch.Tensor]:
    model, reg, opt = _regularized(pair_bn)
    losses = TrainingSpeed(compile=compile).compiled(step_losses)
    gen = torch.Generator().manual_seed(1)
    x, y = torch.rand(3, 8, 1, 16, 16, generator=gen), torch.randint(0, 10, (3, 8), generator=gen)
    draws, off = reg.draw(3), torch.autocast("cuda", enabled=False)
    for b in range(3):
        train_step(model, reg, opt, x[b], y[b], off, draws[b], losses)
    return {**model.state_dict(), **{f"head.{k}": v for k, v in reg.head.state_dict().items()}}


def _close(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        torch.equal(a[k], b[k]) if not a[k].is_floating_point() else torch.allclose(a[k], b[k], rtol=1e-2, atol=5e-3)
        for k in a
    )


@pytest.mark.slow
def test_a_compiled_step_is_one_graph_and_trains_as_the_eager_step():
    """Three compiled steps end where three eager steps end, up to rounding (inductor fuses
    operations; the largest difference was 7e-5 on an AMD EPYC and 1.5e-3 on an Intel Xeon with
    AMX, against 0.38 for the deliberate change below): weights, BatchNorm running statistics
    and counts, the head's EMA means. About a minute of compilation on one CPU thread."""
    model, reg, _ = _regularized("classification")
    x, y = torch.rand(8, 1, 16, 16), torch.randint(0, 10, (8,))
    explained = torch._dynamo.explain(step_losses)(model, reg, x, y, reg.draw(1)[0])
    assert (explained.graph_count, explained.graph_break_count) == (1, 0)

    eager, compiled = _three_steps(""), _three_steps("default")
    assert _close(eager, compiled)
    # the comparison can fail: stimuli that do move BatchNorm's statistics end elsewhere
    assert not _close(eager, _three_steps("", pair_bn="shared"))


def test_compiled_training_is_asked_through_the_environment_and_refused_where_it_cannot_hold(monkeypatch):
    monkeypatch.delenv(COMPILE_ENV, raising=False)
    assert training_compile_mode(CUDA, False) == ""
    monkeypatch.setenv(COMPILE_ENV, "reduce-overhead")
    assert training_compile_mode(CUDA, False) == "reduce-overhead"
    for dev, deterministic, says in (
        (CPU, False, "published weights"),
        (CUDA, True, "--deterministic"),
    ):
        with pytest.raises(BenchError, match=says):
            training_compile_mode(dev, deterministic)
    monkeypatch.setenv(COMPILE_ENV, "fastest")
    with pytest.raises(BenchError, match=f"{COMPILE_ENV} 'fastest': not a torch.compile mode"):
        training_compile_mode(CUDA, False)
    with pytest.raises(BenchError, match="not a torch.compile mode"):
        TrainingSpeed(compile="fastest")


def test_a_cpu_training_asked_to_compile_stops_before_writing(cards, tmp_path, monkeypatch):
    monkeypatch.setenv(COMPILE_ENV, "default")
    with pytest.raises(BenchError, match=f"unset {COMPILE_ENV}"):
        train(load_model_card("tiny-none"), 0, tmp_path / "work", "cpu")
    assert not (tmp_path / "work").exists()


def test_bench_perf_refuses_an_unknown_compile_mode_in_one_line():
    code, out, err = run_cli("perf", "--device", "cpu", "--compile", "fastest")
    assert code == 2 and err.count("\n") == 1 and "--compile 'fastest'" in err


def test_a_machine_whose_compiler_backend_fails_gets_one_error_line(monkeypatch):
    import torch._inductor.config as inductor

    monkeypatch.setattr(inductor.cpp, "cxx", ("no-such-compiler",))
    monkeypatch.setattr(inductor, "fx_graph_cache", False)  # a cached kernel would need no compiler
    step = TrainingSpeed(compile="default").compiled(lambda x: x.sin() + 1)
    with pytest.raises(
        BenchError, match=r"torch.compile \(default\) does not work on this machine: .*no-such-compiler"
    ):
        step(torch.randn(4))
