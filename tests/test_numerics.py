"""Numerics classes and the portable CPU mode. The portable mode pins every numeric library to
one code path at one thread; here "another machine" is this one with another dispatch (MKL's
instruction set, oneDNN's cap, the thread count asked for), which the mode must neutralise."""

import json
import os
import sqlite3
import subprocess
import sys

import pytest
import torch

from bench.numerics import Numerics, evaluation_numerics, lower_isa_environment, portable_environment, training_numerics
from bench.train.checkpoint import load_checkpoint


def test_numerics_classes_keep_cpu_and_cuda_apart():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert training_numerics(cpu).label == "cpu-fp32" and evaluation_numerics(cpu).label == "cpu-fp32"
    assert training_numerics(cuda).label == "cuda-bf16" and evaluation_numerics(cuda).label == "cuda-fp32"
    assert Numerics("cpu", "fp32", "avx2").label == "cpu-fp32-portable-avx2"
    env = portable_environment("avx2")
    assert env["ATEN_CPU_CAPABILITY"] == "avx2" and env["MKL_CBWR"] == "AVX2" and env["OMP_NUM_THREADS"] == "1"


def _train(root, workdir, extra_env, portable):
    env = {**os.environ, "BENCH_CARDS": str(root), "BENCH_NO_DOWNLOAD": "1", **extra_env}
    env.pop("BENCH_PORTABLE", None)
    args = [
        sys.executable,
        "-m",
        "bench",
        *(["--portable"] if portable else []),
        "zoo",
        "train",
        "tiny-shuffle",
        "--workdir",
        str(workdir),
        "--device",
        "cpu",
    ]
    result = subprocess.run(args, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    path = next(workdir.rglob("model.pt"))
    return path, load_checkpoint(path)


@pytest.mark.slow
def test_portable_training_is_bit_identical_under_another_dispatch(cards, tmp_path):
    other = {
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "OMP_NUM_THREADS": "2",
        "OPENBLAS_CORETYPE": "Prescott",
    }
    a_path, a = _train(cards, tmp_path / "a", {}, portable=True)
    b_path, b = _train(cards, tmp_path / "b", other, portable=True)
    assert a["state_hash"] == b["state_hash"]
    assert a["numerics"] == "cpu-fp32-portable-avx2" and a_path.parent.name == "seed0-cpu-fp32-portable-avx2"
    origin = json.loads(a["provenance"])
    assert origin["cpu_capability"] == "AVX2" and origin["threads"] == 1 and origin["mkldnn"] is False
    capped = lower_isa_environment()
    if capped:  # without the mode, a lower instruction set is another machine: other weights
        _, c = _train(cards, tmp_path / "c", {}, portable=False)
        _, d = _train(cards, tmp_path / "d", capped, portable=False)
        assert c["state_hash"] != d["state_hash"] and c["numerics"] == "cpu-fp32"


@pytest.mark.slow
def test_cells_record_their_numerics_class_and_provenance(cards):
    from conftest import run_cli

    assert run_cli("run", "tiny", "--device", "cpu")[0] == 0
    db = sqlite3.connect(cards / ".bench" / "results.sqlite")
    numerics, origin = db.execute("SELECT numerics, provenance FROM cells LIMIT 1").fetchone()
    origin = json.loads(origin)
    assert numerics == "cpu-fp32" and origin["numerics"] == "cpu-fp32"
    assert {"torch", "threads", "cpu_capability", "mkldnn", "autocast"} <= set(origin)
    trained = db.execute("SELECT numerics, provenance FROM trainings LIMIT 1").fetchone()
    assert trained[0] == "cpu-fp32" and "cpu_capability" in json.loads(trained[1])
