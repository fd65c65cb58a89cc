"""How an outside model's weights are read: one loader per ``source.kind`` of an external card.
Loading is weights-only wherever the format allows it; a Python factory runs only when the card
names it."""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import ConfigDict
from torch import nn

from bench.errors import CardError
from bench.io import short_reason
from bench.registry import Registry


@dataclass(frozen=True)
class SourceSpec:
    """``path``: the weights or program file, relative to the card's folder. ``factory``
    ('package.module:function', kind 'python' only) builds the network, ``kwargs`` are passed
    to it, and ``path`` holds its state_dict."""

    __pydantic_config__ = ConfigDict(extra="forbid")
    kind: Literal["checkpoint", "python", "torchscript", "exported"]
    path: str
    factory: str = ""
    kwargs: dict[str, Any] = field(default_factory=dict)


Loader = Callable[[SourceSpec, Path, str], nn.Module]  # (spec, resolved file, where) -> module
SOURCES: Registry[Loader] = Registry("model source")


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@SOURCES.register("checkpoint")
def load_bench_checkpoint(spec: SourceSpec, path: Path, where: str) -> nn.Module:
    """A neuroreg-bench export (``bench zoo export``), read weights-only."""
    from bench.train.checkpoint import load_model

    return load_model(path)


@contextlib.contextmanager
def _importable(folders: list[Path]) -> Iterator[None]:
    added = [str(f) for f in folders if str(f) not in sys.path]
    sys.path[:0] = added
    try:
        yield
    finally:
        for f in added:
            sys.path.remove(f)


@SOURCES.register("python")
def load_python_factory(spec: SourceSpec, path: Path, where: str) -> nn.Module:
    """``factory(**kwargs)`` builds the network (the only code a card can make us run); the
    weights file is a state_dict read weights-only and loaded strictly."""
    module_name, _, attr = spec.factory.partition(":")
    if not module_name or not attr:
        raise CardError(f"{where}: key 'source.factory' must be 'package.module:function' (got {spec.factory!r})")
    card_root = Path(where).resolve().parent.parent  # the folder holding models/
    try:
        with _importable([card_root, Path.cwd()]):
            factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise CardError(
            f"{where}: key 'source.factory': cannot import {spec.factory!r} ({short_reason(exc)}); "
            "install its package or put the module beside the models/ folder"
        ) from None
    try:
        model = factory(**spec.kwargs)
    except Exception as exc:
        raise CardError(
            f"{where}: the factory {spec.factory!r} raised {short_reason(exc)}; fix the factory or 'source.kwargs'"
        ) from None
    if not isinstance(model, nn.Module):
        raise CardError(f"{where}: the factory {spec.factory!r} returned {type(model).__name__}, not a torch.nn.Module")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        model.load_state_dict(state)
    except Exception as exc:
        raise CardError(
            f"{where}: {path} does not hold weights of the network {spec.factory!r} builds ({short_reason(exc)}); "
            "point 'source.path' at its state_dict (torch.save(model.state_dict(), ...))"
        ) from None
    return model


@SOURCES.register("torchscript")
def load_torchscript(spec: SourceSpec, path: Path, where: str) -> nn.Module:
    """TorchScript archives run without Python code of the author's."""
    try:
        with warnings.catch_warnings():  # torch deprecates TorchScript; archives people have still load
            warnings.simplefilter("ignore", FutureWarning)
            return torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        raise CardError(
            f"{where}: {path} is not a TorchScript archive ({short_reason(exc)}); save it with torch.jit.save"
        ) from None


@SOURCES.register("exported")
def load_exported(spec: SourceSpec, path: Path, where: str) -> nn.Module:
    """A ``torch.export`` program (export it with a dynamic batch dimension: attacks batch freely)."""
    try:
        return torch.export.load(str(path)).module()
    except Exception as exc:
        raise CardError(
            f"{where}: {path} is not a torch.export program ({short_reason(exc)}); save it with torch.export.save"
        ) from None
