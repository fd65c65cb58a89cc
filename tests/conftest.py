"""Tiny cards (width-4 ResNet18, a few hundred images) in a temporary card root, and an
in-process CLI runner. Nothing here downloads: BENCH_NO_DOWNLOAD is set for every test."""

from __future__ import annotations

import io
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

# small enough to train in about a second, large enough to learn (about 50% validation
# accuracy): a model at chance would make robustness tests pass vacuously
TINY_TRAINER = """
[trainer]
epochs = 3
lr_step_epochs = 2
train_images = 512
val_fraction = 0.02
augment = {augment}
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

TINY_HEAD = 'arch = "resnet18"\nwidth = 4\ndataset = "fmnist-mini"\n'
TINY_CARDS = {
    "tiny-none": TINY_HEAD + TINY_TRAINER.format(augment="false"),
    "tiny-pixel": TINY_HEAD + TINY_TRAINER.format(augment="false") + TINY_TARGET,
    # the shuffle card also exercises crop/flip augmentation (determinism and resume tests)
    "tiny-shuffle": TINY_HEAD + TINY_TRAINER.format(augment="true") + TINY_TARGET + 'shuffle = "entries"\n',
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
attacks = ["deepfool", "fmn"]
norms = ["l2", "linf"]
max_images = 16
deepfool = { steps = 5 }
fmn = { steps = 5 }
"""


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("BENCH_NO_DOWNLOAD", "1")
    monkeypatch.setenv("BENCH_CARDS", "")


def write_card_root(root: Path, suite: str = TINY_SUITE) -> Path:
    (root / "models").mkdir(parents=True)
    (root / "suites").mkdir()
    for name, text in TINY_CARDS.items():
        (root / "models" / f"{name}.toml").write_text(text)
    (root / "suites" / "tiny.toml").write_text(suite)
    return root


def enter(root: Path, monkeypatch) -> Path:
    """Make ``root`` the card root and the working directory."""
    monkeypatch.setenv("BENCH_CARDS", str(root))
    monkeypatch.chdir(root)
    return root


@pytest.fixture
def cards(tmp_path, monkeypatch) -> Path:
    """A card root with the tiny cards, which is also the working directory."""
    return enter(write_card_root(tmp_path), monkeypatch)


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
