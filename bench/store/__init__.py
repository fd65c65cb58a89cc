"""The results store: SQLite, one transaction per evaluation cell."""

from bench.store.sqlite import CellKey, ResultStore

__all__ = ["CellKey", "ResultStore"]
