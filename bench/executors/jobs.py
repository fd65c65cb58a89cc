"""The two units of work, as functions any worker runs: train one model seed, compute one planned
cell. Their arguments are plain picklable data (the run, names, seeds, the cell and the
checkpoint files it reads), so a worker on another machine that shares the workdir needs nothing
else and plans nothing. A cell's result is a file (bench.store.cellfiles), never a write to the
SQLite store."""

from __future__ import annotations

import os
import socket

from bench.plan import Cell, Checkpoints, RunSpec


def _setup(run: RunSpec) -> None:
    """A worker computes as the driver would: its threads, and the device's numerics (TF32 off,
    deterministic kernels where asked, oneDNN off under a simulated CPU or portable mode)."""
    import torch

    from bench.numerics import configure_device

    if run.threads:
        torch.set_num_threads(run.threads)
    configure_device(run.dev, run.deterministic)


def train_job(run: RunSpec, model: str, seed: int) -> tuple[str, int, str, str]:
    """(model, seed, checkpoint path, checkpoint hash); a killed one resumes per epoch."""
    _setup(run)
    from bench.compute import ensure_trained

    card = next(c for c in run.suite.cards if c.name == model)
    path, state_hash = ensure_trained(run, card, seed)
    return model, seed, str(path), state_hash


_COMPUTERS: dict = {}  # per worker process and run: a computer keeps caches across the cells it is given


def cell_job(run: RunSpec, cell: Cell, checkpoints: Checkpoints) -> str:
    """Compute one cell and write it as a file; returns its digest. While it runs, a marker
    'cells/DIGEST.running' says which host and process computes it (bench status)."""
    _setup(run)
    from bench.compute import CellComputer
    from bench.data import load_dataset
    from bench.errors import BenchError
    from bench.plan import subset_for
    from bench.store.cellfiles import cells_dir, write_cell_file

    key = (run.suite.name, run.suite.version, run.workdir, run.device)
    if key not in _COMPUTERS:
        _COMPUTERS.clear()
        _COMPUTERS[key] = CellComputer(run, {}, {})
    computer = _COMPUTERS[key]
    computer.checkpoints.update(checkpoints)
    if cell.n_images not in computer.subsets:
        ds = load_dataset(run.suite.dataset, run.data_root)
        computer.subsets[cell.n_images] = subset_for(ds, run.suite, cell.n_images)
    if computer.subsets[cell.n_images].digest != cell.key.subset_hash:
        raise BenchError(
            f"{socket.gethostname()}: the evaluation images of {run.suite.dataset!r} differ from the planner's "
            "(another copy of the dataset under --data-root or $BENCH_DATA?); give every worker the same data"
        )
    marker = cells_dir(run.workdir) / f"{cell.key.digest}.running"
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(f"{socket.gethostname()}:{os.getpid()}")
    try:
        meta, output = computer.compute(cell)
        write_cell_file(run.workdir, cell.key, meta, output)
    finally:
        marker.unlink(missing_ok=True)
    return cell.key.digest
