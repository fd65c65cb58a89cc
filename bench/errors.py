"""User-facing errors. The CLI prints ``error: <message>`` on one line and exits 2; the message
names the file/field at fault and how to fix it."""

from __future__ import annotations


class BenchError(Exception):
    """An error caused by the user's input or environment, not a bug."""

    exit_code = 2

    def __str__(self) -> str:  # one line whatever the input held (a key may contain a newline)
        return super().__str__().replace("\r", "\\r").replace("\n", "\\n")


class UnknownName(BenchError):
    def __init__(self, kind: str, name: str, valid: list[str], where: str = ""):
        prefix = f"{where}: " if where else ""
        super().__init__(f"{prefix}unknown {kind} {name!r}; valid names: {', '.join(valid) or '(none)'}")


class CardError(BenchError):
    """A malformed or ill-typed TOML card."""


class DataNotFound(BenchError):
    """A dataset that is not on this machine."""


class CheckpointError(BenchError):
    """A file that is not a valid neuroreg-bench checkpoint."""
