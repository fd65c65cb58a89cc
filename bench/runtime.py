"""Device choice, provenance (package versions, device names) and progress reporting."""
from __future__ import annotations

import json
import platform
from importlib import metadata
from typing import Protocol

import torch

from bench.errors import BenchError

PACKAGES = ("neuroreg-bench", "torch", "torchvision", "foolbox", "eagerpy", "numpy")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise BenchError("--device cuda: no CUDA device is visible to torch; use --device cpu or auto")
    if name not in ("cpu", "cuda"):
        raise BenchError(f"--device {name!r}: expected auto, cpu or cuda")
    return torch.device(name)


def device_label(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{platform.machine()}x{torch.get_num_threads()}"


def package_versions() -> str:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return json.dumps(out, sort_keys=True)


class Progress(Protocol):
    """What long work reports; the CLI renders it with rich, tests pass ``None``."""

    def start(self, description: str, total: int) -> None: ...

    def advance(self, n: int = 1) -> None: ...

    def log(self, message: str) -> None: ...


class Silent:
    def start(self, description: str, total: int) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass

    def log(self, message: str) -> None:
        pass
