"""``bench status``: a suite's progress as the workdir and the store show it, whichever executor
did the work (trainings' locks and states, cell files and markers, Slurm job states)."""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections import Counter
from pathlib import Path

import torch

from bench.numerics import training_numerics
from bench.plan import RunSpec, plan
from bench.store import ResultStore
from bench.store.cellfiles import cells_dir
from bench.train.trainer import model_dir


def lock_holder(lock: Path) -> str | None:
    """Who holds a training lock ('host:pid'), None when nobody does."""
    if not lock.is_file():
        return None
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return None
    except OSError:
        return os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
    finally:
        os.close(fd)


def training_states(run: RunSpec) -> Counter:
    numerics = training_numerics(run.dev)
    states = Counter()
    for card in run.suite.cards:
        if card.external:
            continue  # trained elsewhere
        for seed in run.suite.seeds:
            folder = model_dir(run.workdir, card, seed, numerics)
            if (folder / "model.pt").is_file():
                states["done"] += 1
            elif lock_holder(folder / ".lock"):
                states["running"] += 1
            elif (folder / "state.pt").is_file():
                epoch = torch.load(folder / "state.pt", map_location="cpu", weights_only=True).get("epoch", 0)
                states[f"interrupted (epoch {epoch} of {card.trainer.epochs})"] += 1
            else:
                states["not started"] += 1
    return states


def slurm_states(workdir: Path) -> list[str]:
    path = Path(workdir) / "slurm" / "jobs.json"
    if not path.is_file():
        return []
    try:
        import submitit
    except ImportError:
        return [f"slurm jobs recorded in {path}; install submitit to see their states"]
    jobs = json.loads(path.read_text())
    if jobs.get("cluster") != "slurm":
        return [
            f"{len(jobs.get(k, []))} {k} jobs of the last run ran on submitit's local executor"
            for k in ("train", "cell")
        ]
    logging.getLogger("submitit").setLevel(logging.ERROR)  # sacct hiccups are retried; their warnings are noise here
    lines = []
    for kind in ("train", "cell"):
        states = Counter(
            submitit.SlurmJob(folder=Path(workdir) / "slurm" / "%j", job_id=j).state for j in jobs.get(kind, [])
        )
        if states:
            lines.append(f"slurm {kind} jobs: " + ", ".join(f"{n} {s.lower()}" for s, n in states.most_common()))
    return lines


def suite_status(run: RunSpec, store: ResultStore) -> list[str]:
    suite, workdir = run.suite, run.workdir
    trainings = training_states(run)
    cells = plan(run, store).cells
    states = Counter()
    for cell in cells:
        if cell.key is None:
            states["waiting for their model"] += 1
        elif store.has(cell.key):
            states["stored"] += 1
        elif (cells_dir(workdir) / f"{cell.key.digest}.json").is_file():
            states["done, not merged (bench merge)"] += 1
        elif (cells_dir(workdir) / f"{cell.key.digest}.running").is_file():
            states["running"] += 1
        else:
            states["missing"] += 1
    total = sum(trainings.values())
    lines = [
        f"{suite.name} v{suite.version}: {total} trainings: " + ", ".join(f"{n} {s}" for s, n in trainings.items()),
        f"{len(cells)} cells: " + ", ".join(f"{n} {s}" for s, n in states.items()),
    ]
    return lines + slurm_states(workdir)
