"""Beyond one process: the same suite through worker processes, submitit's local executor and a
local Ray cluster gives bit-identical results to a serial run at the same thread count; workers
killed mid-training and mid-cell lose and duplicate nothing; two runs on one workdir never train
a model twice at once; bad cluster settings are one error line."""

import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from conftest import TINY_CARDS

from bench.executors import EXECUTORS
from bench.store.cellfiles import cells_dir, merge, write_cell_file

pytestmark = pytest.mark.slow

SUITE = """
version = 1
dataset = "fmnist-mini"
models = ["tiny-none", "tiny-pixel"]
seeds = [0, 1]
batch_size = 32

[subset]
size = 32
seed = 0

[[evaluations]]
kind = "noise"
noise = "gaussian"
levels = [0.0, 0.2]

[[evaluations]]
kind = "pgd"
norm = "linf"
epsilons = [0.0, 0.02]
steps = 3

[[evaluations]]
kind = "minimal"
attacks = ["deepfool", "fmn"]
norms = ["linf"]
max_images = 12
deepfool = { steps = 5 }
fmn = { steps = 20 }
"""


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("executors")
    (root / "models").mkdir()
    (root / "suites").mkdir()
    for name, text in TINY_CARDS.items():
        (root / "models" / f"{name}.toml").write_text(text.replace("epochs = 3", "epochs = 4"))
    (root / "suites" / "tiny.toml").write_text(SUITE)
    return root


RAY_TMP = tempfile.mkdtemp(prefix="br", dir="/tmp")  # Ray's socket paths must stay under 107 bytes


def bench(root: Path, *args: str, wait: bool = True):
    env = {
        **os.environ,
        "BENCH_CARDS": str(root),
        "BENCH_NO_DOWNLOAD": "1",
        "OMP_NUM_THREADS": "1",
        "BENCH_RAY_TMP": RAY_TMP,
    }
    cmd = [sys.executable, "-m", "bench", *args]
    if not wait:
        return subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def serial(root):
    result = bench(
        root, "run", "tiny", "--device", "cpu", "--threads", "1", "--workdir", "w-serial", "--reports", "r-serial"
    )
    assert result.returncode == 0, result.stderr
    return (root / "r-serial" / "tiny" / "results.csv").read_bytes()


def stored_once(store: Path, cells: int) -> None:
    db = sqlite3.connect(store)
    assert db.execute("SELECT COUNT(*), COUNT(DISTINCT key) FROM cells").fetchone() == (cells, cells)
    per_cell = db.execute(
        "SELECT key, metric, source, param, statistic, attack, COUNT(*) FROM metrics "
        "GROUP BY key, metric, source, param, statistic, attack HAVING COUNT(*) > 1"
    ).fetchall()
    assert per_cell == []  # no number stored twice


# every registered executor but the reference (serial), Ray (its own test below kills its workers)
# and Slurm (no cluster here: its settings are checked below)
OTHER_EXECUTORS = [e for e in EXECUTORS.names() if e not in ("serial", "ray", "slurm")]


@pytest.mark.parametrize("executor", OTHER_EXECUTORS)
def test_worker_processes_and_submitit_give_the_serial_numbers(root, serial, executor):
    result = bench(
        root,
        "run",
        "tiny",
        "--device",
        "cpu",
        "--executor",
        executor,
        "--workers",
        "2",
        "--workdir",
        f"w-{executor}",
        "--reports",
        f"r-{executor}",
    )
    assert result.returncode == 0, result.stderr
    assert (root / f"r-{executor}" / "tiny" / "results.csv").read_bytes() == serial
    stored_once(root / f"w-{executor}" / "results.sqlite", 16)


def test_ray_with_workers_killed_mid_training_and_mid_cell_finishes_with_the_serial_numbers(root, serial):
    """A watcher SIGKILLs the Ray worker that trains a model (after its first epoch) and the one
    computing a cell; Ray runs those tasks again, the training resumes from its last epoch."""
    workdir = root / "w-ray"
    killed = {"training": None, "cell": None}

    def watch(stop):
        while not stop.is_set() and None in killed.values():
            for state in workdir.glob("checkpoints/*/seed*/state.pt"):
                lock = state.parent / ".lock"
                if killed["training"] is None and not (state.parent / "model.pt").exists() and lock.is_file():
                    pid = int(lock.read_text().split(":")[-1] or 0)
                    if pid and pid != os.getpid():
                        os.kill(pid, signal.SIGKILL)
                        killed["training"] = state.parent.name
            for marker in cells_dir(workdir).glob("*.running") if killed["cell"] is None else []:
                pid = int(marker.read_text().split(":")[-1] or 0)
                if pid:
                    os.kill(pid, signal.SIGKILL)
                    killed["cell"] = marker.stem
            time.sleep(0.02)

    stop = threading.Event()
    watcher = threading.Thread(target=watch, args=(stop,))
    watcher.start()
    try:
        result = bench(
            root,
            "run",
            "tiny",
            "--device",
            "cpu",
            "--executor",
            "ray",
            "--workers",
            "2",
            "--workdir",
            "w-ray",
            "--reports",
            "r-ray",
        )
    finally:
        stop.set()
        watcher.join()
    assert result.returncode == 0, result.stderr
    assert killed["training"] and killed["cell"], killed  # both kills happened
    assert (root / "r-ray" / "tiny" / "results.csv").read_bytes() == serial
    stored_once(workdir / "results.sqlite", 16)


def test_two_runs_on_one_workdir_train_each_model_once_and_agree(root, serial):
    run = ("run", "tiny", "--device", "cpu", "--threads", "1", "--workdir", "w-twice")
    first = bench(root, *run, "--reports", "r-twice-a", wait=False)
    time.sleep(1.0)
    second = bench(root, *run, "--reports", "r-twice-b", wait=False)
    outputs = [p.communicate(timeout=900) for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outputs
    logs = outputs[0][1] + outputs[1][1]
    for model in ("tiny-none", "tiny-pixel"):
        for seed in (0, 1):
            assert logs.count(f"{model} seed {seed} epoch 4/4") == 1  # trained by one of them only
    assert (root / "r-twice-a" / "tiny" / "results.csv").read_bytes() == serial
    assert (root / "r-twice-b" / "tiny" / "results.csv").read_bytes() == serial
    stored_once(root / "w-twice" / "results.sqlite", 16)


def test_bad_cluster_settings_are_one_error_line(root):
    for args, words in (
        (["--executor", "ray", "--address", "127.0.0.1:1"], "no Ray cluster answers there"),
        (["--executor", "slurm"], "no Slurm here"),
        (["--executor", "mpi"], "expected serial, local, ray or slurm"),
        (["--executor", "local", "--workers", "-1"], "workers"),
    ):
        result = bench(root, "run", "tiny", "--device", "cpu", "--workdir", "w-bad", *args)
        assert result.returncode == 2 and words in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_cell_files_round_trip_and_merging_is_idempotent(root, serial, tmp_path):
    """Every stored cell written as a file and merged into a new store gives the same rows;
    merging again adds nothing; a damaged file is reported and left in place."""
    from bench.store import ResultStore

    source = ResultStore(root / "w-serial" / "results.sqlite")
    work = tmp_path / "w"
    digests = [r["key"] for r in source._dicts("SELECT key FROM cells ORDER BY key")]
    for digest in digests:
        key, meta, out = source.stored_cell(digest)
        assert key.digest == digest
        out.notes, out.flags = {"n": 1}, ["f"]
        write_cell_file(work, key, meta, out)
    (cells_dir(work) / "junk.json").write_text("{not json")
    target = ResultStore(tmp_path / "merged.sqlite")
    merged, present, bad = merge(target, work)
    assert (merged, present, len(bad)) == (len(digests), 0, 1) and "junk.json" in bad[0]
    assert merge(target, work)[:2] == (0, len(digests))
    for digest in digests:
        assert target.cell_metrics(digest) == source.cell_metrics(digest)
        assert all(
            (a == b).all() for a, b in zip(target.cell_examples(digest).values(), source.cell_examples(digest).values())
        )


def test_local_workers_end_with_their_driver(tmp_path):
    """A killed driver leaves no worker computing for nobody: the pool's workers watch it."""
    driver = """
import multiprocessing, os, sys, time
from concurrent.futures import ProcessPoolExecutor
from bench.executors.local import _exit_with

def job():
    print(os.getpid(), flush=True)
    time.sleep(120)

if __name__ == "__main__":
    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), initializer=_exit_with,
                               initargs=(os.getpid(),))
    pool.submit(job)
    time.sleep(120)
"""
    (tmp_path / "driver.py").write_text(driver)
    proc = subprocess.Popen([sys.executable, str(tmp_path / "driver.py")], stdout=subprocess.PIPE, text=True)
    worker = int(proc.stdout.readline())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    os.kill(worker, signal.SIGKILL)
    pytest.fail("the worker outlived its driver by 10 s")
