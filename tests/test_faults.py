"""File-system faults, each one a clean one-line error (exit 2) or a recovery that says what it
did, never a traceback and never hours of work before the error. Read-only cases drop root's
override of file permissions for the command (setpriv), so they hold when CI runs as root."""

import errno
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY_CARDS, run_cli

pytestmark = pytest.mark.slow

SUITE = """
version = 1
dataset = "fmnist-mini"
models = ["tiny-none", "tiny-pixel"]
seeds = [0]
batch_size = 64

[subset]
size = 32
seed = 0

[[evaluations]]
kind = "noise"
noise = "gaussian"
levels = [0.0, 0.2]
"""
NO_OVERRIDE = [
    "setpriv",
    "--bounding-set",
    "-dac_override,-dac_read_search",
    "--inh-caps=-dac_override,-dac_read_search",
]


def _root(folder: Path) -> Path:
    (folder / "models").mkdir(parents=True)
    (folder / "suites").mkdir()
    for name, text in TINY_CARDS.items():
        (folder / "models" / f"{name}.toml").write_text(text)
    (folder / "suites" / "tiny.toml").write_text(SUITE)
    return folder


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A card root with a finished run: trained models, a store, a report."""
    root = _root(tmp_path_factory.mktemp("faults"))
    result = run_bench(root, "run", "tiny", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    return root


@pytest.fixture
def work(finished, tmp_path):
    """A private copy of the finished root."""
    root = tmp_path / "root"
    shutil.copytree(finished, root)
    return root


def run_bench(root: Path, *args: str, unprivileged: bool = False) -> subprocess.CompletedProcess:
    """``bench ARGS`` in a subprocess in ``root``; ``unprivileged``: without root's override of
    file permissions."""
    cmd = [sys.executable, "-m", "bench", *args]
    if unprivileged and os.geteuid() == 0:
        cmd = NO_OVERRIDE + cmd
    env = {**os.environ, "BENCH_CARDS": str(root), "BENCH_NO_DOWNLOAD": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, cwd=root, capture_output=True, text=True, env=env, timeout=600)


def clean_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("store:")]
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert lines and lines[-1].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[-1], lines[-1]


def read_only(*paths: Path) -> None:
    for path in paths:
        for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
            p.chmod(0o555 if p.is_dir() else 0o444)


# ---------------------------------------------------------------- the results store


@pytest.mark.parametrize("damage", ["junk", "truncated", "under-a-file", "a-folder"])
def test_a_damaged_or_misplaced_store_is_one_error_line(work, damage):
    store = work / "store.sqlite"
    if damage == "junk":
        store.write_bytes(os.urandom(65536))
    elif damage == "truncated":
        store.write_bytes((work / ".bench" / "results.sqlite").read_bytes()[:3000])
    elif damage == "under-a-file":
        (work / "plain").write_text("x")
        store = work / "plain" / "store.sqlite"
    else:
        store.mkdir()
    result = run_bench(work, "run", "tiny", "--device", "cpu", "--store", str(store))
    clean_error(result, str(store))


def test_a_read_only_store_fails_before_any_training(work):
    from bench.store import ResultStore

    store = work / "ro.sqlite"
    ResultStore(store).close()  # an empty store: everything is to be done
    read_only(store)
    result = run_bench(
        work,
        "run",
        "tiny",
        "--device",
        "cpu",
        "--store",
        str(store),
        "--workdir",
        str(work / "fresh"),
        unprivileged=True,
    )
    clean_error(result, str(store), "readonly")
    assert not (work / "fresh" / "checkpoints").exists()  # nothing trained before the error


def test_a_finished_read_only_workdir_runs_again(work):
    read_only(work / ".bench")
    result = run_bench(work, "run", "tiny", "--device", "cpu", "--reports", str(work / "elsewhere"), unprivileged=True)
    assert result.returncode == 0, result.stderr
    assert "evaluated 0 cells, 4 already in the store" in result.stdout


def test_a_missing_store_is_not_created_by_readers_and_a_new_one_is_announced(work):
    missing = work / "typo.sqlite"
    clean_error(run_bench(work, "report", "tiny", "--store", str(missing)), str(missing), "no results store")
    # a check reports its missing reference first (before opening any store), and creates no store
    clean_error(
        run_bench(work, "check", "tiny", "--against", str(work / "r.json"), "--no-run", "--store", str(missing)),
        "r.json",
        "no reference file",
    )
    assert not missing.exists()
    result = run_bench(work, "run", "tiny", "--device", "cpu", "--store", str(missing))
    assert result.returncode == 0 and f"store: {missing} (new)" in result.stderr


# ---------------------------------------------------------------- workdir and checkpoints


def test_a_read_only_or_misplaced_workdir_fails_before_an_epoch(work):
    ro = work / "ro"
    ro.mkdir()
    read_only(ro)
    result = run_bench(work, "zoo", "train", "tiny-none", "--workdir", str(ro), "--device", "cpu", unprivileged=True)
    clean_error(result, "not writable")
    assert "epoch 1" not in result.stderr
    (work / "afile").write_text("x")
    clean_error(run_bench(work, "run", "tiny", "--device", "cpu", "--workdir", str(work / "afile")), "afile")


def test_a_truncated_model_is_exported_again_from_its_training_state(work):
    model = next((work / ".bench").rglob("tiny-none-*/seed0/model.pt"))
    good = run_bench(work, "zoo", "export", "tiny-none", "--to", str(work / "good.pt"))
    assert good.returncode == 0
    model.write_bytes(model.read_bytes()[:1000])
    bad = run_bench(work, "zoo", "export", "tiny-none", "--to", str(work / "copy.pt"))
    clean_error(bad, "model.pt", "delete it and train the model again")
    assert not (work / "copy.pt").exists()  # a corrupt file is never copied
    result = run_bench(work, "run", "tiny", "--device", "cpu", "--store", str(work / "s.sqlite"))
    assert result.returncode == 0, result.stderr
    assert (
        "exporting it again from the training state" in result.stderr and (model.parent / "model.pt.corrupt").exists()
    )


def test_a_truncated_training_state_restarts_the_model_saying_so(work):
    folder = next((work / ".bench").rglob("tiny-pixel-*/seed0"))
    (folder / "model.pt").unlink()
    (folder / "state.pt").write_bytes((folder / "state.pt").read_bytes()[:5000])
    result = run_bench(work, "zoo", "train", "tiny-pixel", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert "training again from the first epoch" in result.stderr and (folder / "state.pt.corrupt").exists()


def test_leftovers_of_killed_writes_are_cleaned_on_the_next_run(work):
    folder = next((work / ".bench").rglob("tiny-pixel-*/seed0"))
    (folder / "model.pt").unlink()
    (work / ".bench" / "results.sqlite").unlink()  # its cells are needed again, so its training is too
    (folder / ".state.pt.abc123.tmp").write_bytes(b"half a checkpoint")
    reports = work / "reports"
    (reports / "tiny" / ".tmp-old").mkdir()  # an older version's temporary folder
    (reports / ".tiny.tmp-kill").mkdir()  # this version's, from a killed report
    result = run_bench(work, "run", "tiny", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert not (folder / ".state.pt.abc123.tmp").exists()
    assert not (reports / "tiny" / ".tmp-old").exists() and not (reports / ".tiny.tmp-kill").exists()


def test_a_report_killed_between_its_two_renames_is_recovered(work):
    reports = work / "reports"
    (reports / "tiny").rename(reports / ".tiny.old-killed")  # the old report moved away, the new never arrived
    result = run_bench(work, "report", "tiny")
    assert result.returncode == 0, result.stderr
    assert (reports / "tiny" / "results.csv").is_file() and not list(reports.glob(".tiny.*"))


# ---------------------------------------------------------------- reports


@pytest.mark.parametrize("case", ["reports-is-a-file", "suite-entry-is-a-file", "reports-read-only"])
def test_an_unwritable_report_destination_fails_before_the_work(work, case):
    reports = work / "out"
    if case == "reports-is-a-file":
        reports.write_text("x")
    elif case == "suite-entry-is-a-file":
        reports.mkdir()
        (reports / "tiny").write_text("x")
    else:
        reports.mkdir()
        read_only(reports)
    result = run_bench(
        work,
        "run",
        "tiny",
        "--device",
        "cpu",
        "--reports",
        str(reports),
        "--workdir",
        str(work / "new"),
        unprivileged=case == "reports-read-only",
    )
    clean_error(result, str(reports))
    assert not (work / "new").exists()  # no training before the error


# ---------------------------------------------------------------- anything else from the OS


def test_an_unreadable_card_and_a_full_disk_are_error_lines(work, monkeypatch):
    card = work / "models" / "tiny-none.toml"
    card.chmod(0o000)
    clean_error(run_bench(work, "zoo", "show", "tiny-none", unprivileged=True), "tiny-none.toml", "cannot read")
    card.chmod(0o644)

    import bench.io as bench_io

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device", str(work / ".bench"))

    monkeypatch.chdir(work)
    monkeypatch.setenv("BENCH_CARDS", str(work))
    monkeypatch.setattr(bench_io.os, "fsync", full)
    code, _, err = run_cli("run", "tiny", "--device", "cpu", "--workdir", str(work / "w2"))
    assert code == 2 and err.strip().splitlines()[-1].startswith("error: ") and "disk is full" in err
    assert "Traceback" not in err


def test_a_store_locked_by_another_writer_waits_then_fails_cleanly(work, monkeypatch):
    import bench.store.sqlite as store_module

    connect = sqlite3.connect
    blocker = connect(work / ".bench" / "results.sqlite")
    monkeypatch.setattr(store_module.sqlite3, "connect", lambda path, timeout: connect(path, timeout=0.2))
    blocker.execute("BEGIN EXCLUSIVE")
    monkeypatch.chdir(work)
    monkeypatch.setenv("BENCH_CARDS", str(work))
    try:
        code, _, err = run_cli(
            "run",
            "tiny",
            "--device",
            "cpu",
            "--workdir",
            str(work / "w3"),
            "--store",
            str(work / ".bench" / "results.sqlite"),
        )
    finally:
        blocker.rollback()
    assert code == 2 and "database is locked" in err and "Traceback" not in err
