"""Training speed settings that only a GPU gets: channels_last tensors (Tensor Core friendly
convolutions), cuDNN autotuning for the fixed training shapes, the fused SGD kernel, and on
request a compiled step. None of them applies on CPU, so CPU weights stay bit-identical and the
published CPU numbers keep their meaning; a CUDA training is its own numerics class (bf16) anyway."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass

import torch

from bench.errors import BenchError
from bench.io import short_reason

# torch.compile's modes; "reduce-overhead" adds CUDA graphs, which remove the per-kernel launch
# cost that bounds a batch-64 step on a large GPU
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
COMPILE_ENV = "BENCH_COMPILE"  # an environment variable, so every worker process of a run sees it


@dataclass(frozen=True)
class TrainingSpeed:
    channels_last: bool = False
    cudnn_benchmark: bool = False
    fused_sgd: bool = False
    compile: str = ""  # a torch.compile mode for the step's forward pass and loss; "" runs it eagerly

    def __post_init__(self):
        checked_compile_mode(self.compile, "TrainingSpeed.compile")

    @classmethod
    def for_device(cls, dev: torch.device, deterministic: bool = False, compile: str = "") -> TrainingSpeed:
        """All on for CUDA; autotuning off under the deterministic switch (it picks kernels by timing)."""
        cuda = dev.type == "cuda"
        return cls(channels_last=cuda, cudnn_benchmark=cuda and not deterministic, fused_sgd=cuda, compile=compile)

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def optimizer_options(self) -> dict:
        return {"fused": True} if self.fused_sgd else {}

    def compiled(self, fn: Callable) -> Callable:
        """``fn`` compiled in this mode, or itself. Dynamo's caches are dropped first: each training
        compiles its own model, and a process that trains many would otherwise reach the recompile
        limit and fall back to eager without a word. A machine whose compiler backend does not
        work (no C++ compiler, no Triton) gets one error line at the first call."""
        if not self.compile:
            return fn
        torch._dynamo.reset()
        compiled, mode = torch.compile(fn, mode=self.compile), self.compile

        def run(*args):
            try:
                return compiled(*args)
            except torch._dynamo.exc.BackendCompilerFailed as exc:
                raise BenchError(
                    f"torch.compile ({mode}) does not work on this machine: {short_reason(exc)}; "
                    f"unset {COMPILE_ENV} (or drop --compile) to run the step eagerly"
                ) from exc

        return run

    @contextlib.contextmanager
    def backends(self):
        """cuDNN autotuning while training only: evaluation runs many shapes, each would be tuned."""
        saved = torch.backends.cudnn.benchmark
        torch.backends.cudnn.benchmark = self.cudnn_benchmark or saved
        try:
            yield
        finally:
            torch.backends.cudnn.benchmark = saved


def checked_compile_mode(mode: str, where: str) -> str:
    """``mode`` ("" runs eagerly) or a one-line error naming ``where`` it was given."""
    if mode and mode not in COMPILE_MODES:
        raise BenchError(f"{where} {mode!r}: not a torch.compile mode; use one of {', '.join(COMPILE_MODES)}")
    return mode


def training_compile_mode(dev: torch.device, deterministic: bool) -> str:
    """The compile mode ``BENCH_COMPILE`` asks of a zoo training ("" when unset). CUDA only: a
    compiled CPU step fuses operations, so its weights would no longer be the published CPU
    weights of the same seed; and not with the deterministic switch, whose promise (two runs
    bit-equal) is unchecked for generated kernels."""
    mode = checked_compile_mode(os.environ.get(COMPILE_ENV, "").strip(), COMPILE_ENV)
    if not mode:
        return ""
    if dev.type != "cuda":
        raise BenchError(
            f"{COMPILE_ENV}={mode}: compiled training is for CUDA devices (on CPU it would change the published "
            f"weights of every seed); unset {COMPILE_ENV} or train with --device cuda"
        )
    if deterministic:
        raise BenchError(
            f"{COMPILE_ENV}={mode} with --deterministic: compiled kernels are not checked for run-to-run "
            f"equality; unset {COMPILE_ENV} or drop --deterministic"
        )
    return mode
