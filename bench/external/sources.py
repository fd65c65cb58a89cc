"""How an outside model's weights are read: one loader per ``source.kind`` of an external card.
Loading is weights-only wherever the format allows it; a Python factory runs only when the card
names it."""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import json
import os
import sys
import warnings
import zipfile
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

# Programs, not data: loading one runs code its author wrote (a Python factory, a TorchScript
# method, an exported graph and whatever custom objects it carries). They load only with the
# card's 'trust_code = true' or the command's --trust-code (which sets TRUST_VAR for workers too).
CODE_KINDS = frozenset({"python", "torchscript", "exported"})
TRUST_VAR = "BENCH_TRUST_CODE"


def code_trusted() -> bool:
    return os.environ.get(TRUST_VAR) == "1"


def trust_code(enabled: bool) -> None:
    """--trust-code: every card of this command (and its worker processes) may run its code."""
    if enabled:
        os.environ[TRUST_VAR] = "1"


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


# the members a plain torch.export archive holds: JSON, raw tensor bytes its configs describe,
# and the sample inputs (a torch.save archive, read here weights-only before torch reads it)
_EXPORT_PLAIN = ("archive_format", "archive_version", ".data/version", "byteorder", ".data/serialization_id")


def pickled_members(path: Path) -> list[str]:
    """The members of a torch.export archive that torch would unpickle with weights_only=False
    (pickled weights or constants, custom or opaque objects, legacy .pt members, sample inputs
    the weights-only reader refuses). Empty for a plain export."""
    found = []
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            name = info.filename
            inner = name.split("/", 1)[-1]
            if info.is_dir() or inner in _EXPORT_PLAIN or ("/models/" in name and name.endswith(".json")):
                continue
            if name.endswith("_config.json"):
                config = json.loads(archive.read(info)).get("config", {})
                for fqn, meta in config.items():
                    if meta.get("use_pickle") or not str(meta.get("path_name", "")).startswith(("weight_", "tensor_")):
                        found.append(f"{name}: {fqn}")
            elif "/data/sample_inputs/" in name and name.endswith(".pt"):
                try:
                    torch.load(io.BytesIO(archive.read(info)), map_location="cpu", weights_only=True)
                except Exception:
                    found.append(name)
            elif not (("/data/weights/weight_" in name) or ("/data/constants/tensor_" in name)):
                found.append(name)
    return found


@SOURCES.register("exported")
def load_exported(spec: SourceSpec, path: Path, where: str) -> nn.Module:
    """A ``torch.export`` program (export it with a dynamic batch dimension: attacks batch freely).
    Refused, before torch reads it, when it holds anything torch would unpickle unsafely."""
    try:
        unsafe = pickled_members(path)
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise CardError(
            f"{where}: {path} is not a torch.export archive ({short_reason(exc)}); save it with torch.export.save"
        ) from None
    if unsafe:
        raise CardError(
            f"{where}: {path} holds pickled members ({', '.join(unsafe[:3])}{', ...' if len(unsafe) > 3 else ''}), "
            "which would run code on load; export without custom objects or pickled tensors, or hand over a "
            "state_dict with a 'python' factory card"
        )
    try:
        return torch.export.load(str(path)).module()
    except Exception as exc:
        raise CardError(
            f"{where}: {path} is not a torch.export program ({short_reason(exc)}); save it with torch.export.save"
        ) from None
