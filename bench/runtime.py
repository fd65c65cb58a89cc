"""Device choice and progress reporting."""

from __future__ import annotations

from typing import Protocol

import torch

from bench.errors import BenchError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise BenchError("--device cuda: no CUDA device is visible to torch; use --device cpu or auto")
    if name not in ("cpu", "cuda"):
        raise BenchError(f"--device {name!r}: expected auto, cpu or cuda")
    return torch.device(name)


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
