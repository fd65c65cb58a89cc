"""TOML -> typed, frozen dataclasses, validated on load (pydantic in strict JSON mode, so a
string is never silently coerced into a number). Errors name the file, the key and the
expected type on one line."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError

from bench.errors import CardError

T = TypeVar("T")

_EXPECTED = {
    "int_type": "an integer",
    "float_type": "a number",
    "string_type": "a string",
    "bool_type": "true or false",
    "list_type": "an array",
    "tuple_type": "an array",
    "dict_type": "a table",
    "dataclass_type": "a table",
}


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise CardError(f"{path}: not valid TOML ({exc}); fix the syntax") from None
    except RecursionError:
        raise CardError(f"{path}: nested too deeply to read; a card's tables are a few levels deep") from None
    except OSError as exc:
        raise CardError(f"{path}: cannot read ({exc.strerror})") from None


def _format_error(exc: ValidationError, where: str, prefix: str) -> str:
    err = exc.errors()[0]
    loc = prefix + "".join(
        f"[{p}]" if isinstance(p, int) else ("." if i or prefix else "") + str(p) for i, p in enumerate(err["loc"])
    )
    kind = err["type"]
    if kind == "missing":
        return f"{where}: missing required key '{loc}'"
    if kind in ("unexpected_keyword_argument", "extra_forbidden"):
        return f"{where}: unknown key '{loc}'; remove it or check its spelling"
    if kind == "value_error":  # a check of the dataclass itself (__post_init__) or a field validator
        return f"{where}: key '{loc}': {err['msg'].removeprefix('Value error, ')}"
    expected = _EXPECTED.get(kind)
    got = err.get("input")
    if expected:
        return f"{where}: key '{loc}' must be {expected} (got {type(got).__name__} {got!r})"
    return f"{where}: key '{loc}': {err['msg']} (got {got!r})"


def parse(cls: type[T], data: dict[str, Any], where: str, prefix: str = "") -> T:
    """Validate ``data`` into ``cls``. ``where`` names the file; ``prefix`` the table inside it."""
    try:
        return TypeAdapter(cls).validate_json(json.dumps(data), strict=True)
    except ValidationError as exc:
        raise CardError(_format_error(exc, where, prefix)) from None


# field metadata of an option added after results were stored under keys that lack it: at its
# default it is left out of as_dict (so of cell keys), and every stored cell keeps its key
ADDED = {"added": True}


def as_dict(obj: Any) -> Any:
    """JSON-ready form of a (nested) dataclass, for hashing and storage; an ``ADDED`` field at
    its default is left out."""
    if dataclasses.is_dataclass(obj):
        return {
            f.name: as_dict(getattr(obj, f.name))
            for f in dataclasses.fields(obj)
            if not (f.metadata.get("added") and as_dict(getattr(obj, f.name)) == as_dict(_default(f)))
        }
    if isinstance(obj, (list, tuple)):
        return [as_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: as_dict(v) for k, v in obj.items()}
    return obj


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def identity_dict(obj: Any) -> Any:
    """``as_dict`` without the fields that hold their default: what identifies a recipe. A new
    option whose default keeps the old behaviour then leaves every existing identity (card
    hashes, trained checkpoints) as it was."""
    if dataclasses.is_dataclass(obj):
        return {
            f.name: identity_dict(getattr(obj, f.name))
            for f in dataclasses.fields(obj)
            if as_dict(getattr(obj, f.name)) != as_dict(_default(f))
        }
    if isinstance(obj, (list, tuple)):
        return [identity_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: identity_dict(v) for k, v in obj.items()}
    return obj


def identity_hash(obj: Any, length: int = 16) -> str:
    return hashlib.sha256(json.dumps(identity_dict(obj), sort_keys=True, separators=(",", ":")).encode()).hexdigest()[
        :length
    ]


def canonical_json(obj: Any) -> str:
    return json.dumps(as_dict(obj), sort_keys=True, separators=(",", ":"))


def content_hash(obj: Any, length: int = 16) -> str:
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:length]
