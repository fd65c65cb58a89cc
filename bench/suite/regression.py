"""``bench check``: run a suite against a committed reference (bench.check holds the rules).

--update trains the reference seeds, commits one checkpoint per model beside the reference (the
fixtures of the evaluation check) and writes the reference. A check evaluates the fixtures and
trains the suite's own seeds again. The fixtures are evaluated in portable numerics (the card's
[check] portable level) in a child process started with that environment (it must be set before
torch loads), so their numbers are the same bits on any x86 CPU of that level."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.cards import SuiteCard
from bench.check import (
    Change,
    Drift,
    Fixture,
    Reference,
    compare,
    compare_training,
    read_reference,
    reference_columns,
    reference_numbers,
    training_columns,
    write_reference,
)
from bench.errors import BenchError
from bench.io import atomic_copy
from bench.numerics import (
    evaluation_numerics,
    package_versions,
    portable_active,
    portable_child_environment,
    provenance,
)
from bench.report.collect import collect, csv_table
from bench.report.summary import headline_per_seed
from bench.runtime import Progress, Silent, resolve_device
from bench.store import ResultStore
from bench.suite.runner import report_specs, run_suite
from bench.train.checkpoint import load_checkpoint, state_hash


@dataclass
class CheckResult:
    changes: list[Change] = field(default_factory=list)  # evaluation numbers of the fixtures
    drifts: list[Drift] = field(default_factory=list)  # training columns

    @property
    def failed(self) -> bool:
        return any(c.status != "ok" for c in [*self.changes, *self.drifts])


def _columns(suite: SuiteCard, store: ResultStore, plan, what: str):
    data = collect(suite, store, plan)
    if data.missing:
        raise BenchError(
            f"{len(data.missing)} cells of suite {suite.name!r} ({what}) are not in the store "
            f"(first: {data.missing[0]}); run without --no-run"
        )
    return data


def update_reference(
    suite: SuiteCard,
    store: ResultStore,
    workdir: Path,
    path: Path,
    device: str = "auto",
    data_root: Path | None = None,
    progress: Callable[[], Progress] = Silent,
    deterministic: bool = False,
    executor=None,
) -> Reference:
    seeds = tuple(suite.check.reference_seeds or suite.seeds)
    summary = run_suite(
        suite, store, workdir, device, data_root, progress, seeds=seeds, deterministic=deterministic, executor=executor
    )
    data = _columns(suite, store, summary.cells, "reference seeds")
    fixture_seed = suite.seeds[0]
    fixtures = []
    for card in suite.cards:
        if card.external:
            continue  # its own file is the fixture, checked by its hash in the card hash
        source, checkpoint_hash = summary.checkpoints[(card.name, fixture_seed)]
        rel = f"checkpoints/{card.name}-seed{fixture_seed}.pt"
        atomic_copy(source, Path(path).parent / rel)
        fixtures.append(Fixture(card.name, fixture_seed, rel, checkpoint_hash))
    pinned = {(f.model, f.seed): Path(path).parent / f.file for f in fixtures}
    fixture_rows = fixture_numbers(suite, store, workdir, pinned, device, data_root, progress, True, deterministic)
    columns = training_columns(headline_per_seed(data.results, report_specs(suite)), data.trainings)
    dev = resolve_device(device)
    written = {**json.loads(provenance(dev, evaluation_numerics(dev))), "packages": json.loads(package_versions())}
    ref = Reference(
        suite.name,
        suite.version,
        fixtures,
        reference_numbers(fixture_rows),
        list(seeds),
        reference_columns(columns, list(seeds)),
        written,
        suite.check.portable,
    )
    write_reference(path, ref)
    return ref


def fixture_changes(
    suite: SuiteCard,
    store: ResultStore,
    workdir: Path,
    path: Path,
    device: str = "auto",
    data_root: Path | None = None,
    progress: Callable[[], Progress] = Silent,
    run: bool = True,
    deterministic: bool = False,
    ref: Reference | None = None,
) -> list:
    """The evaluation part of a check: the reference's committed checkpoints evaluated here,
    every number against the reference's (``bench check``, and ``bench selftest`` on a GPU).
    ``ref``: the file at ``path`` already read."""
    ref = ref or read_reference(path, suite)  # a bad reference fails before any work
    pinned = {}
    for f in ref.fixtures:
        file = Path(path).parent / f.file
        if not file.is_file():
            raise BenchError(
                f"{file}: the reference's checkpoint of {f.model} seed {f.seed} is missing; restore it "
                "from git or regenerate the reference with --update"
            )
        if state_hash(load_checkpoint(file)["state_dict"]) != f.checkpoint_hash:
            raise BenchError(
                f"{file}: its weights are not the ones the reference was written from; restore it from "
                "git or regenerate the reference with --update"
            )
        pinned[(f.model, f.seed)] = file
    if ref.portable != suite.check.portable:
        raise BenchError(
            f"{path}: its fixture numbers were computed in {ref.portable or 'native'} numerics, the card asks for "
            f"{suite.check.portable or 'native'}; regenerate it with 'bench check {suite.name} --against {path} --update'"
        )
    current = fixture_numbers(suite, store, workdir, pinned, device, data_root, progress, run, deterministic)
    return compare(ref.numbers, current, suite)


def fixture_numbers(
    suite: SuiteCard,
    store: ResultStore,
    workdir: Path,
    pinned: dict[tuple[str, int], Path],
    device: str,
    data_root: Path | None,
    progress: Callable[[], Progress],
    run: bool,
    deterministic: bool,
):
    """results.csv rows of the committed checkpoints' cells, evaluated (``run``) or read from the
    store, in the card's portable numerics: here when this process already runs them (or the card
    asks for none), else in a child process started with that environment."""
    level = suite.check.portable
    if not level or portable_active(level):
        seeds = tuple(sorted({seed for _, seed in pinned}))
        fixtures = run_suite(
            suite,
            store,
            workdir,
            device,
            data_root,
            progress,
            pinned=pinned,
            seeds=seeds,
            deterministic=deterministic,
            train_missing=run,
        )
        return csv_table(_columns(suite, store, fixtures.cells, "committed checkpoints").results)
    if resolve_device(device).type != "cpu":
        raise BenchError(
            f"suite {suite.name!r}: its committed checkpoints are evaluated in portable CPU numerics ([check] "
            f"portable = {level!r}); run the check with --device cpu, or set portable = '' in the card"
        )
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "fixtures.json"
        args = ["check-fixtures", suite.path or suite.name, "--store", str(store.path), "--workdir", str(workdir)]
        args += [f"--pin={m}:{s}:{p}" for (m, s), p in pinned.items()]
        args += ["--out", str(out), *(["--data-root", str(data_root)] if data_root else [])]
        args += [] if run else ["--no-run"]
        done = subprocess.run(
            [sys.executable, "-m", "bench", *args],
            env=portable_child_environment(level),
            stdout=subprocess.PIPE,
            text=True,
        )
        if done.returncode != 0 or not out.is_file():
            raise BenchError(
                f"suite {suite.name!r}: evaluating the committed checkpoints in portable numerics ({level}) failed "
                f"(exit {done.returncode}; its error is above)"
            )
        import pandas as pd

        return pd.DataFrame(json.loads(out.read_text()))


def check_against(
    suite: SuiteCard,
    store: ResultStore,
    workdir: Path,
    path: Path,
    device: str = "auto",
    data_root: Path | None = None,
    progress: Callable[[], Progress] = Silent,
    run: bool = True,
    deterministic: bool = False,
    ref: Reference | None = None,
    fixtures_only: bool = False,
    executor=None,
) -> CheckResult:
    """The fixtures' numbers against the reference's, then the suite's seeds trained and evaluated
    (on ``executor``, bench.executors, where given) against the reference's seed spread."""
    ref = ref or read_reference(path, suite)
    result = CheckResult()
    result.changes = fixture_changes(suite, store, workdir, path, device, data_root, progress, run, deterministic, ref)
    if fixtures_only:
        return result
    trained = run_suite(
        suite,
        store,
        workdir,
        device,
        data_root,
        progress,
        deterministic=deterministic,
        train_missing=run,
        executor=executor if run else None,
    )
    data = _columns(suite, store, trained.cells, "trained seeds")
    per_seed = headline_per_seed(data.results, report_specs(suite))
    result.drifts = compare_training(
        ref.columns, training_columns(per_seed, data.trainings), suite.check.false_alarm, suite.check.training_floor
    )
    return result
