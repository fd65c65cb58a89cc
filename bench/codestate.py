"""Which code made a number, and when: the git commit and dirty flag of this checkout, a content
hash of the package's own source (which holds without git, and tells two dirty states apart),
and a clock for one piece of work (start, end, wall and CPU seconds; a suspended process
accrues wall time but no CPU time). Recorded in every checkpoint and cell, so a report can say
that its numbers came from one code state and that training began after its endpoints were
committed."""

from __future__ import annotations

import functools
import hashlib
import subprocess
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
CHECKOUT = PACKAGE.parent


def git(*args: str, cwd: Path = CHECKOUT) -> str | None:
    """A git command's output in the checkout, or None without git or outside a repository."""
    try:
        done = subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


@functools.cache
def source_hash() -> str:
    """sha256 of the package's Python sources (path and bytes, in path order), 16 hex digits."""
    h = hashlib.sha256()
    for path in sorted(PACKAGE.rglob("*.py")):
        h.update(str(path.relative_to(PACKAGE)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


# what makes numbers: the package, the cards, the pinned dependencies (not reports or prose, so a
# report written while the README is edited is not "dirty")
NUMBER_PATHS = ("bench", "models", "suites", "pyproject.toml", "constraints.txt")


@functools.cache
def code_state() -> dict:
    """{'commit': HEAD or None, 'dirty': uncommitted changes to NUMBER_PATHS (None without git), 'source': the
    package's source hash}."""
    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--", *NUMBER_PATHS) if commit is not None else None
    return {
        "commit": commit.strip() if commit else None,
        "dirty": None if status is None else bool(status.strip()),
        "source": source_hash(),
    }


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def state_label(state: dict) -> str:
    """'abc1234 (dirty), source 0123abcd' for reports."""
    commit = (state.get("commit") or "no git")[:12]
    dirty = " (dirty)" if state.get("dirty") else ""
    return f"{commit}{dirty}, source {state.get('source', '?')[:8]}"


@dataclass
class Clock:
    """Wall and CPU seconds of one piece of work, with its start and end timestamps."""

    started_at: str = field(default_factory=now)
    _wall: float = field(default_factory=time.perf_counter)
    _cpu: float = field(default_factory=time.process_time)

    def record(self) -> dict:
        return {
            "started_at": self.started_at,
            "finished_at": now(),
            "wall_s": round(time.perf_counter() - self._wall, 3),
            "cpu_s": round(time.process_time() - self._cpu, 3),
            "code": code_state(),
        }
