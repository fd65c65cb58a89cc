"""The two units of work, as functions any worker runs: train one model seed, compute one cell.
Their arguments are plain picklable data (the suite card, names, seeds, checkpoint paths), so a
worker on another machine that shares the workdir needs nothing else. A cell's result is a file
(bench.store.cellfiles), never a write to the SQLite store."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

from bench.cards import SuiteCard


@dataclass(frozen=True)
class RunSpec:
    """What every unit of work of one run shares."""

    suite: SuiteCard
    workdir: str
    device: str
    data_root: str | None
    deterministic: bool
    threads: int  # torch threads per worker


def _setup(run: RunSpec) -> None:
    """A worker computes as the driver would: its threads, and the device's numerics (TF32 off,
    deterministic kernels where asked, oneDNN off under a simulated CPU or portable mode)."""
    import torch

    from bench.numerics import configure_device
    from bench.runtime import resolve_device

    if run.threads:
        torch.set_num_threads(run.threads)
    configure_device(resolve_device(run.device), run.deterministic)


def train_job(run: RunSpec, model: str, seed: int) -> tuple[str, int, str, str]:
    """(model, seed, checkpoint path, checkpoint hash). A lock per model in the workdir makes a
    second worker on the same model wait and find it trained; a killed one resumes per epoch."""
    _setup(run)
    from bench.suite.runner import ensure_trained

    card = next(c for c in run.suite.cards if c.name == model)
    path, state_hash, _ = ensure_trained(
        card,
        seed,
        Path(run.workdir),
        run.device,
        Path(run.data_root) if run.data_root else None,
        _silent,
        run.deterministic,
    )
    return model, seed, str(path), state_hash


def _silent():
    from bench.runtime import Silent

    return Silent()


_COMPUTERS: dict = {}  # per worker process and run: a computer keeps caches across the cells it is given


def cell_job(run: RunSpec, model: str, seed: int, spec_index: int, checkpoints: dict) -> str:
    """Compute one cell and write it as a file; returns its digest. While it runs, a marker
    'cells/DIGEST.running' says which host and process computes it (bench status)."""
    _setup(run)
    from bench.data import load_dataset
    from bench.numerics import evaluation_numerics
    from bench.runtime import resolve_device
    from bench.store.cellfiles import cells_dir, write_cell_file
    from bench.suite.runner import CellComputer, cell_key, plan_cells, subset_size, subsets_of

    suite, dev = run.suite, resolve_device(run.device)
    data_root = Path(run.data_root) if run.data_root else None
    ds = load_dataset(suite.dataset, data_root)
    cell = next(
        c
        for c in plan_cells(suite, subset_size(ds, suite), (seed,))
        if c.card.name == model and c.spec_index == spec_index
    )
    checkpoints = {k: (Path(p), h) for k, (p, h) in checkpoints.items()}
    key_id = (suite.name, suite.version, run.workdir, run.device)
    if key_id not in _COMPUTERS:
        _COMPUTERS.clear()
        _COMPUTERS[key_id] = CellComputer(suite, checkpoints, dev, data_root, {})
    computer = _COMPUTERS[key_id]
    computer.checkpoints.update(checkpoints)
    computer.subsets.update(subsets_of(suite, ds, [cell]))
    cell.key = cell_key(suite, cell, checkpoints, computer.subsets[cell.n_images].digest, evaluation_numerics(dev))
    marker = cells_dir(run.workdir) / f"{cell.key.digest}.running"
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(f"{socket.gethostname()}:{os.getpid()}")
    try:
        meta, output = computer.compute(cell)
        write_cell_file(Path(run.workdir), cell.key, meta, output)
    finally:
        marker.unlink(missing_ok=True)
    return cell.key.digest
