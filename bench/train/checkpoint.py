"""Checkpoints: the resumable training state, and the self-contained exported model that
``bench.load_model`` reads with ``torch.load(weights_only=True)``."""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from bench.errors import CheckpointError
from bench.models import CifarResNet

MODEL_FORMAT = "neuroreg-bench/model"
STATE_FORMAT = "neuroreg-bench/train-state"
FORMAT_VERSION = 1


def atomic_save(obj: Any, path: Path) -> None:
    """Write next to the destination, fsync, then rename: a crash leaves the old file or the new."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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


def _load(path: Path, expected_format: str) -> dict:
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a valid checkpoint ({first[:160]}); re-export it with 'bench zoo export'") from None
    if not isinstance(obj, dict) or obj.get("format") != expected_format:
        raise CheckpointError(f"{path}: not a {expected_format} checkpoint; re-export it with 'bench zoo export'")
    if obj.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path}: written by a newer neuroreg-bench (format {obj['format_version']}); upgrade")
    return obj


def load_checkpoint(path: str | Path) -> dict:
    return _load(Path(path), MODEL_FORMAT)


def load_train_state(path: Path) -> dict:
    return _load(path, STATE_FORMAT)


def load_model(path: str | Path, device: str = "cpu") -> CifarResNet:
    """An eval-mode network mapping N x 1 x H x W inputs in [0,1] to logits."""
    ckpt = load_checkpoint(path)
    try:
        model = CifarResNet(tuple(ckpt["config"]["blocks"]), ckpt["config"]["num_classes"],
                            ckpt["config"]["width"], ckpt["config"]["in_channels"])
        model.load_state_dict(ckpt["state_dict"])
    except (KeyError, TypeError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: checkpoint does not match its architecture ({str(exc).splitlines()[0][:160]})") from None
    return model.to(device).eval()
