"""Atomic file writes: write beside the destination, fsync, rename. A crash or a kill leaves the
old file or the new one, never a half-written one; leftovers of a killed write are hidden
files named ``.NAME.*.tmp`` beside it, removed by ``remove_stale_temporaries``."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


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


def cpu_snapshot(obj):
    """A copy of nested dicts/lists/tuples whose tensors are cloned to the CPU: what a training
    state is at this moment, safe to write while the training goes on changing its tensors."""
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: cpu_snapshot(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(cpu_snapshot(v) for v in obj)
    return obj


class BackgroundSaver:
    """``atomic_save`` on a thread, one write at a time: the caller snapshots and goes on while
    the previous state is written and fsync'ed (0.1-0.3 s here for a ResNet18's 134 MB, the
    caller then blocks 40-70 ms for the snapshot; a GPU epoch is about a second). A kill loses at most the write in flight (the previous file stays whole); leaving the
    ``with`` block waits for it and re-raises its error."""

    def __init__(self):
        self._thread = None
        self._error: BaseException | None = None

    def save(self, obj, path: Path) -> None:
        import threading

        self.wait()
        snapshot = cpu_snapshot(obj)

        def write():
            try:
                atomic_save(snapshot, path)
            except BaseException as exc:  # re-raised by wait(), in the training's thread
                self._error = exc

        self._thread = threading.Thread(target=write, name=f"save {Path(path).name}", daemon=False)
        self._thread.start()

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def __enter__(self) -> BackgroundSaver:
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.wait()
        else:  # the block's own error wins; the write still finishes
            with contextlib.suppress(BaseException):
                self.wait()


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
        raise error(
            f"{path}: written by a newer neuroreg-bench ({fmt} format {obj['format_version']}, this one reads "
            f"up to {version}); upgrade neuroreg-bench"
        )
    return obj


def ensure_writable_folder(folder: Path, what: str, fix: str) -> Path:
    """Create ``folder`` if needed and prove it takes a file, before any long work is done."""
    from bench.errors import BenchError

    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise BenchError(f"{folder}: {what} must be a folder, but it is a file; {fix}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-probe.")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise BenchError(f"{folder}: {what} is not writable ({exc.strerror}); {fix}") from None
    return folder


def quarantine(path: Path) -> Path:
    """Move a damaged file aside (``NAME.corrupt``) so that it is neither used nor lost."""
    aside = Path(path).with_name(Path(path).name + ".corrupt")
    os.replace(path, aside)
    return aside


def _link_tree(source: Path, dest: Path) -> None:
    """``dest`` mirrors ``source`` with hard links (copies where links fail): cheap, and the
    original stays where it is until the swap."""
    if source.is_dir() and not source.is_symlink():
        dest.mkdir()
        for item in source.iterdir():
            _link_tree(item, dest / item.name)
        return
    try:
        os.link(source, dest)
    except OSError:
        shutil.copy2(source, dest)


def stale_siblings(dest: Path) -> list[Path]:
    return sorted(Path(dest).parent.glob(f".{Path(dest).name}.tmp-*")) + sorted(
        Path(dest).parent.glob(f".{Path(dest).name}.old-*")
    )


def recover_folder(dest: Path) -> None:
    """Undo what a kill during ``replace_folder`` left: a moved-away old folder comes back where
    the new one never arrived, and unfinished temporary folders go."""
    dest = Path(dest)
    olds = sorted(dest.parent.glob(f".{dest.name}.old-*"))
    if not dest.exists() and olds:
        os.rename(olds[-1], dest)
    for leftover in stale_siblings(dest):
        shutil.rmtree(leftover, ignore_errors=True)


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def replace_folder(new: Path, dest: Path, keep_foreign: bool = True) -> None:
    """Make the completely written folder ``new`` (a sibling of ``dest``) the folder ``dest``:
    the new content appears by one rename, never mixed with the old. Entries of the old folder
    that ``new`` lacks (files a user keeps there) are carried over first (hard links)."""
    new, dest = Path(new), Path(dest)
    os.chmod(new, 0o777 & ~current_umask())  # mkdtemp makes it 0700; a published folder follows the umask
    if dest.exists() and keep_foreign:
        for item in dest.iterdir():
            if not (new / item.name).exists() and not item.name.startswith(".tmp-"):
                _link_tree(item, new / item.name)
    old = None
    if dest.exists():
        old = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.old-"))
        os.rmdir(old)
        os.rename(dest, old)
    os.rename(new, dest)  # the one rename that publishes the new folder
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def exclusive(lock_path: Path, on_wait: Callable[[str], None] | None = None):
    """An exclusive lock held for the block, across processes (POSIX record locks, which network
    file systems honour too). The holder writes 'host:pid' into the file; a second process
    waits, saying who holds it."""
    lock_path = Path(lock_path)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            if on_wait is not None:
                holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
                on_wait(holder)
            fcntl.lockf(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{socket.gethostname()}:{os.getpid()}".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
