"""Checkpoints: the resumable training state, and the self-contained exported model that
``bench.load_model`` reads with ``torch.load(weights_only=True)``."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from bench.errors import CheckpointError
from bench.io import load_versioned, short_reason
from bench.models import CifarResNet

MODEL_FORMAT = "neuroreg-bench/model"
STATE_FORMAT = "neuroreg-bench/train-state"
FORMAT_VERSION = 1


def state_hash(state_dict: dict[str, torch.Tensor]) -> str:
    """Content hash of the weights (torch.save's bytes are not a stable identity)."""
    h = hashlib.sha256()
    for key in sorted(state_dict):
        t = state_dict[key].detach().cpu().contiguous()
        h.update(key.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


MODEL_FIX = "delete it and train the model again (bench zoo train, or bench run), or export a good copy"
STATE_FIX = "delete it to restart this model's training from its first epoch"


def load_checkpoint(path: str | Path) -> dict:
    return load_versioned(Path(path), MODEL_FORMAT, FORMAT_VERSION, "model checkpoint", MODEL_FIX, CheckpointError)


def load_train_state(path: Path) -> dict:
    return load_versioned(path, STATE_FORMAT, FORMAT_VERSION, "training state", STATE_FIX, CheckpointError)


def load_model(path: str | Path, device: str = "cpu") -> CifarResNet:
    """An eval-mode network mapping N x 1 x H x W inputs in [0,1] to logits, its weights frozen
    (requires_grad off): attacks take input gradients only, and computing and accumulating
    weight gradients in every attack step made PGD about 1.5x slower with the same adversarials."""
    ckpt = load_checkpoint(path)
    try:
        config = ckpt["config"]
        model = CifarResNet(
            tuple(config["blocks"]),
            config["num_classes"],
            config["width"],
            config["in_channels"],
            config.get("input_scale", "centered"),
        )
        model.load_state_dict(ckpt["state_dict"])
    except (KeyError, TypeError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: checkpoint does not match its architecture ({short_reason(exc)})") from None
    return model.to(device).eval().requires_grad_(False)
