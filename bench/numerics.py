"""How numbers are computed: the numerics class that keys cells and checkpoints (device and
precision), the portable CPU mode, the CUDA switches, and their provenance.

Why a portable mode: on CPU, oneDNN, MKL, OpenBLAS and ATen's own kernels pick code paths by
instruction set, and training amplifies the last bit, so the same command gives other weights
on another CPU. Pinning every library to one code path at one thread makes CPU results
bit-identical across x86 machines that have it (measured: README, Reproducibility). The
variables must be set before torch and numpy load, so ``bench --portable`` re-executes itself
with them; ``import bench`` applies them when it can and warns when it is too late."""

from __future__ import annotations

import json
import os
import platform
import sys
import warnings
from dataclasses import dataclass
from importlib import metadata

PORTABLE_VAR = "BENCH_PORTABLE"
ACTIVE_VAR = "BENCH_PORTABLE_ACTIVE"  # set by the re-executed process: the environment is complete
# per level: one code path for ATen, MKL (conditional numerical reproducibility), OpenBLAS
# (numpy), numba and glibc's math functions; oneDNN is switched off at run time (its blocking
# depends on the machine), so convolutions go through ATen + MKL
PORTABLE_LEVELS: dict[str, dict[str, str]] = {
    "avx2": {
        "ATEN_CPU_CAPABILITY": "avx2",
        "MKL_CBWR": "AVX2",
        "OPENBLAS_CORETYPE": "Haswell",
        "NUMBA_CPU_NAME": "haswell",
        "GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX512F,-AVX512VL,-AVX512BW,-AVX512DQ",
    },
    "baseline": {
        "ATEN_CPU_CAPABILITY": "default",
        "MKL_CBWR": "COMPATIBLE",
        "OPENBLAS_CORETYPE": "Prescott",
        "NUMBA_CPU_NAME": "generic",
        "GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX,-AVX2,-FMA,-AVX512F,-AVX512VL,-AVX512BW,-AVX512DQ",
    },
}
THREADS = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
CUBLAS_WORKSPACE = ":4096:8"  # cuBLAS needs a fixed workspace for deterministic results


ONEDNN_VAR = "BENCH_ONEDNN"  # 'off': convolutions through ATen's kernels (which the capability caps)
# "another machine" for regression tests: every library's kernels at an older instruction set
# (AVX2: Haswell-class; baseline: SSE4.2), and oneDNN off so that convolutions run ATen's kernels
# at that level too. oneDNN cannot be capped instead: ONEDNN_MAX_CPU_ISA=AVX2 on an AVX-512 CPU
# corrupts the heap in torch 2.14.1's oneDNN ("corrupted double-linked list" at one thread, a hang
# at two); left on, it runs the AVX-512 kernels a real AVX2 machine does not have.
SIMULATED_CPUS = {
    "avx2": {
        "ATEN_CPU_CAPABILITY": "avx2",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
        "OPENBLAS_CORETYPE": "Haswell",
        "GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX512F,-AVX512VL,-AVX512BW,-AVX512DQ",
        ONEDNN_VAR: "off",
    },
    "baseline": {
        "ATEN_CPU_CAPABILITY": "default",
        "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
        "OPENBLAS_CORETYPE": "Nehalem",
        "GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX,-AVX2,-FMA,-AVX512F,-AVX512VL,-AVX512BW,-AVX512DQ",
        ONEDNN_VAR: "off",
    },
}
CAPABILITY_RANK = {"DEFAULT": 0, "AVX2": 1, "AVX512": 2}


def simulated_cpu_environment(level: str) -> dict[str, str]:
    """Environment variables that make this machine compute like one with an older CPU (the
    stand-in for "another machine" in CI and tests); empty where this CPU is not above ``level``."""
    import torch

    here = CAPABILITY_RANK.get(torch.backends.cpu.get_cpu_capability(), 0)
    return dict(SIMULATED_CPUS[level]) if here > {"avx2": 1, "baseline": 0}[level] else {}


def lower_isa_environment() -> dict[str, str]:
    """The simulated CPU one level below this one's (AVX-512 -> AVX2, AVX2 -> baseline)."""
    import torch

    capability = torch.backends.cpu.get_cpu_capability()
    return simulated_cpu_environment("avx2" if capability == "AVX512" else "baseline")


def portable_level() -> str | None:
    level = os.environ.get(PORTABLE_VAR, "").strip().lower()
    if level in ("", "0", "off", "no"):
        return None
    return "avx2" if level in ("1", "on", "yes", "true") else level


def portable_environment(level: str) -> dict[str, str]:
    from bench.errors import BenchError

    if level not in PORTABLE_LEVELS:
        raise BenchError(f"{PORTABLE_VAR}={level!r}: expected one of {', '.join(PORTABLE_LEVELS)}")
    return {**PORTABLE_LEVELS[level], **THREADS, PORTABLE_VAR: level, ACTIVE_VAR: level}


def portable_child_environment(level: str) -> dict[str, str]:
    """This process's environment for a child in portable mode: the pins of ``level``, and none of
    the caps a simulated CPU sets (the pins decide every library's code path; a real CPU of that
    level runs them as pinned)."""
    caps = {k for env in SIMULATED_CPUS.values() for k in env}
    return {**{k: v for k, v in os.environ.items() if k not in caps}, **portable_environment(level)}


def portable_active(level: str) -> bool:
    return bool(level) and portable_level() == level and os.environ.get(ACTIVE_VAR) == level


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as fh:
            return next((set(line.split(":", 1)[1].split()) for line in fh if line.startswith("flags")), set())
    except OSError:
        return set()


def check_portable_cpu(level: str) -> None:
    from bench.errors import BenchError

    if level == "avx2" and platform.machine() in ("x86_64", "AMD64") and not {"avx2", "fma"} <= cpu_flags():
        raise BenchError(
            "--portable: this CPU has no AVX2/FMA; use BENCH_PORTABLE=baseline (slower, and its numbers "
            "differ from the avx2 level's)"
        )
    if platform.machine() not in ("x86_64", "AMD64"):
        raise BenchError(f"--portable pins x86 code paths; this machine is {platform.machine()}")


def reexec_portable(argv: list[str]) -> None:
    """Replace this process by ``python -m bench ARGV`` with the portable environment, unless
    it is already in place. Only the real entry point calls this (never tests in-process)."""
    level = portable_level()
    if level is None or os.environ.get(ACTIVE_VAR) == level:
        return
    check_portable_cpu(level)
    env = {**os.environ, **portable_environment(level)}
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "bench", *argv], env)


def activate_portable_at_import() -> None:
    """Called by ``import bench`` before torch loads: set the variables if it is not too late."""
    level = portable_level()
    if level is None or os.environ.get(ACTIVE_VAR) == level:
        return
    late = [m for m in ("torch", "numpy") if m in sys.modules]
    for key, value in portable_environment(level).items():
        if key != "GLIBC_TUNABLES":  # read by the loader at process start: only a re-exec can set it
            os.environ[key] = value
    if late:
        warnings.warn(
            f"{PORTABLE_VAR}={level}: {', '.join(late)} was imported before bench, so the portable mode is "
            "incomplete; set the variable before starting Python, or use 'bench --portable'",
            stacklevel=3,
        )


def apply_portable_runtime() -> None:
    """The run-time half of the portable mode (after torch is imported), and oneDNN off where a
    simulated CPU asks for it."""
    import torch

    if os.environ.get(ONEDNN_VAR, "").lower() == "off":
        torch.backends.mkldnn.enabled = False
    if portable_level() is None:
        return
    torch.backends.mkldnn.enabled = False
    torch.set_num_threads(1)


@dataclass(frozen=True)
class Numerics:
    """A numerics class: results of different classes are never mixed (it is part of every cell
    key and of the checkpoint folder). CPU fp32, CPU fp32 in portable mode (per level), CUDA
    fp32 (TF32 off), CUDA TF32, CUDA bf16 autocast."""

    device: str  # 'cpu' | 'cuda'
    precision: str  # 'fp32' | 'tf32' | 'bf16'
    portable: str = ""  # the portable level on CPU, '' when off

    @property
    def label(self) -> str:
        return f"{self.device}-{self.precision}" + (f"-portable-{self.portable}" if self.portable else "")


def training_numerics(device) -> Numerics:
    """Training: bf16 autocast on CUDA, fp32 on CPU."""
    if device.type == "cuda":
        return Numerics("cuda", "bf16")
    return Numerics("cpu", "fp32", portable_level() or "")


def evaluation_numerics(device) -> Numerics:
    """Evaluation: fp32 everywhere; on CUDA with TF32 switched off (``configure_device``), so that
    attacks and accuracies are fp32 numbers comparable with the CPU's."""
    if device.type == "cuda":
        return Numerics("cuda", "fp32")
    return Numerics("cpu", "fp32", portable_level() or "")


def configure_device(device, deterministic: bool = False) -> None:
    """Explicit CUDA numerics: TF32 off (decided: fp32 evaluation), and with ``deterministic``
    cuBLAS's fixed workspace, deterministic cuDNN and torch's deterministic algorithms. A no-op
    on CPU, which is deterministic for a fixed thread count and machine."""
    import torch

    apply_portable_runtime()
    if device.type != "cuda":
        return
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True)


def device_label(device) -> str:
    import torch

    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{platform.machine()}x{torch.get_num_threads()}"


PACKAGES = ("neuroreg-bench", "torch", "torchvision", "foolbox", "eagerpy", "numpy")


def package_versions() -> str:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return json.dumps(out, sort_keys=True)


def provenance(device, numerics: Numerics, autocast: str = "", compiled: str = "") -> str:
    """What decides the bits of a number besides code and seeds: library versions, the kernels'
    instruction set, threads, TF32 and determinism switches, the autocast dtype, the
    torch.compile mode of a training (named only when it was compiled)."""
    import torch

    info = {
        "numerics": numerics.label,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "mkldnn": torch.backends.mkldnn.enabled,
        "machine": platform.machine(),
        "portable": numerics.portable or None,
        "mkl_cbwr": os.environ.get("MKL_CBWR"),
        "autocast": autocast or None,
        **({"compile": compiled} if compiled else {}),
    }
    if device.type == "cuda":
        info.update(
            {
                "cuda": torch.version.cuda,
                "cudnn": torch.backends.cudnn.version(),
                "gpu": torch.cuda.get_device_name(device),
                "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
                "tf32_cudnn": torch.backends.cudnn.allow_tf32,
                "deterministic": torch.are_deterministic_algorithms_enabled(),
            }
        )
    return json.dumps(info, sort_keys=True)
