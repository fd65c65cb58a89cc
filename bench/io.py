"""Atomic file writes: write beside the destination, fsync, rename. A crash or a kill leaves the
old file or the new one, never a half-written one; leftovers of a killed write are hidden
files named ``.NAME.*.tmp`` beside it, removed by ``remove_stale_temporaries``."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable


def _default_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _default_mode())  # mkstemp's 0600 would make a published file private
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda fh: fh.write(data))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_copy(source: Path, path: Path) -> None:
    with open(source, "rb") as src:
        atomic_write(path, lambda fh: shutil.copyfileobj(src, fh))


def atomic_save(obj, path: Path) -> None:
    """``torch.save`` through ``atomic_write``."""
    import torch

    atomic_write(path, lambda fh: torch.save(obj, fh))


def remove_stale_temporaries(folder: Path, name: str = "*") -> list[Path]:
    """Temporary files left beside ``name`` by a killed atomic write."""
    removed = []
    for tmp in Path(folder).glob(f".{name}.*.tmp"):
        try:
            tmp.unlink()
            removed.append(tmp)
        except OSError:
            pass
    return removed


def short_reason(exc: BaseException) -> str:
    """An exception's first sentence (library messages run long); for torch's weights-only
    refusal, the unpickler's own reason rather than its advice."""
    text = str(exc).strip() or type(exc).__name__
    if "WeightsUnpickler error:" in text:
        text = "weights-only load refused: " + text.split("WeightsUnpickler error:", 1)[1].strip().split("\n\n")[0]
    first = " ".join(text.split()).split(". ")[0].rstrip(".")
    return first if len(first) <= 200 else first[:197] + "..."


def load_versioned(path: Path, fmt: str, version: int, what: str, fix: str, error: type[Exception]) -> dict:
    """A dict written with ``torch.save`` carrying ``format`` and ``format_version``, read
    weights-only (no code runs). Every problem is ``error`` naming the file and ``fix``."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: no such {what}; {fix}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, not a zip, pickled code, ...
        raise error(f"{path}: not a readable {what} ({short_reason(exc)}); {fix}") from None
    if not isinstance(obj, dict) or obj.get("format") != fmt:
        raise error(f"{path}: not a {fmt} file; {fix}")
    if obj.get("format_version", 0) > version:
        raise error(f"{path}: written by a newer neuroreg-bench ({fmt} format {obj['format_version']}, this one reads "
                    f"up to {version}); upgrade neuroreg-bench")
    return obj
