"""Name -> factory registries (timm-style), so a new dataset, target or attack is one class
and one ``@REGISTRY.register("name")`` line.

A registry may also list a name lazily, as ``"package.module:attribute"``: the module is imported
on first use. That keeps plug-ins that live higher up the layers (the neural targets, the
evaluations with their attack libraries) out of the import graph until a card names them."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from bench.errors import UnknownName

T = TypeVar("T")


class _Lazy(str):
    """'module:attribute', imported on first use."""


class Registry(Generic[T]):
    """``stamp``: an attribute each registered class gets set to its name, so the name is written
    once (in the registry line) and the class still carries it."""

    def __init__(self, kind: str, stamp: str | None = None):
        self.kind, self.stamp = kind, stamp
        self._entries: dict[str, T | _Lazy] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            known = self._entries.get(name)
            here = f"{getattr(obj, '__module__', '')}:{getattr(obj, '__qualname__', '')}"
            if known is not None and not (isinstance(known, _Lazy) and known == here):
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._entries[name] = obj
            if self.stamp:
                setattr(obj, self.stamp, name)
            return obj

        return decorator

    def lazy(self, name: str, target: str) -> None:
        """List ``name`` as ``module:attribute`` without importing it."""
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} registered twice")
        self._entries[name] = _Lazy(target)

    def get(self, name: str, where: str = "") -> T:
        try:
            entry = self._entries[name]
        except KeyError:
            raise UnknownName(self.kind, name, self.names(), where) from None
        if isinstance(entry, _Lazy):
            module, attribute = entry.split(":")
            entry = getattr(importlib.import_module(module), attribute)
            self._entries[name] = entry
        return entry

    def stamp_name(self, obj) -> None:
        """Give a class listed lazily its name when its module is imported directly."""
        here = f"{obj.__module__}:{obj.__qualname__}"
        for name, entry in self._entries.items():
            if entry is obj or entry == here:
                setattr(obj, self.stamp, name)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
