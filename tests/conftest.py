"""Tiny cards (width-4 ResNet18, a few hundred images) in a temporary card root, and an
in-process CLI runner. Nothing here downloads: BENCH_NO_DOWNLOAD is set for every test."""
from __future__ import annotations

import io
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

TINY_TRAINER = """
[trainer]
epochs = 3
lr_step_epochs = 1
train_images = 256
val_fraction = 0.02
augment = true
"""

TINY_TARGET = """
[regularizer]
alpha = 10.0
pairs_per_step = 8

[regularizer.target]
kind = "pixel-threshold"
stimuli = "fmnist-mini"
n_stimuli = 64
threshold = 0.5
"""

TINY_CARDS = {
    "tiny-none": 'arch = "resnet18"\nwidth = 4\ndataset = "fmnist-mini"\n' + TINY_TRAINER,
    "tiny-pixel": 'arch = "resnet18"\nwidth = 4\ndataset = "fmnist-mini"\n' + TINY_TRAINER + TINY_TARGET,
    "tiny-shuffle": 'arch = "resnet18"\nwidth = 4\ndataset = "fmnist-mini"\n' + TINY_TRAINER + TINY_TARGET
    + 'shuffle = "entries"\n',
}

TINY_SUITE = """
description = "test suite"
version = 1
dataset = "fmnist-mini"
models = ["tiny-none", "tiny-pixel"]
seeds = [0]
batch_size = 64

[subset]
size = 48
seed = 0

[[evaluations]]
kind = "noise"
noise = "gaussian"
levels = [0.0, 0.1, 0.3]

[[evaluations]]
kind = "noise"
noise = "saltpepper"
levels = [0.0, 0.05]

[[evaluations]]
kind = "pgd"
norm = "linf"
epsilons = [0.0, 0.02]
steps = 3

[[evaluations]]
kind = "minimal"
norms = ["l2", "linf"]
steps = 5
max_images = 16
"""


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("BENCH_NO_DOWNLOAD", "1")
    monkeypatch.setenv("BENCH_CARDS", "")


@pytest.fixture
def cards(tmp_path, monkeypatch) -> Path:
    """A card root with the tiny cards, which is also the working directory."""
    (tmp_path / "models").mkdir()
    (tmp_path / "suites").mkdir()
    for name, text in TINY_CARDS.items():
        (tmp_path / "models" / f"{name}.toml").write_text(text)
    (tmp_path / "suites" / "tiny.toml").write_text(TINY_SUITE)
    monkeypatch.setenv("BENCH_CARDS", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_cli(*args: str) -> tuple[int, str, str]:
    """Run ``bench ARGS`` in-process through the real entry point: (exit code, stdout, stderr)."""
    from bench.cli import main

    out, err = io.StringIO(), io.StringIO()
    argv = sys.argv
    sys.argv = ["bench", *args]
    code = 0
    try:
        with redirect_stdout(out), redirect_stderr(err):
            main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = argv
    return code, out.getvalue(), err.getvalue()
