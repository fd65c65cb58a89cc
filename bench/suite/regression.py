"""``bench check``: run a suite against a committed reference (bench.check holds the rules).

--update trains the reference seeds, commits one checkpoint per model beside the reference (the
fixtures of the evaluation check) and writes the reference. A check evaluates the fixtures and
trains the suite's own seeds again. The fixtures are evaluated in portable numerics (the card's
[check] portable level) in a child process started with that environment (it must be set before
torch loads), so their numbers are the same bits on any x86 CPU of that level."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

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
from bench.executors import SerialExecutor
from bench.io import atomic_copy
from bench.numerics import (
    evaluation_numerics,
    package_versions,
    portable_active,
    portable_child_environment,
    provenance,
)
from bench.plan import RunSpec, pinned_checkpoints, plan, report_specs
from bench.report.collect import collect, csv_table
from bench.report.summary import headline_per_seed
from bench.runtime import Progress, Silent
from bench.store import ResultStore
from bench.suite.runner import run_suite
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
    run: RunSpec, store: ResultStore, path: Path, executor=None, progress: Progress = Silent()
) -> Reference:
    suite = run.suite
    seeds = tuple(suite.check.reference_seeds or suite.seeds)
    summary = run_suite(run, store, executor, seeds=seeds)
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
    fixture_rows = fixture_numbers(run, store, pinned, progress, True).result()
    columns = training_columns(headline_per_seed(data.results, report_specs(suite)), data.trainings)
    dev = run.dev
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


@dataclass(frozen=True)
class Started:
    """Work begun: ``result()`` waits for it and returns what it made; ``cancel()`` ends it unfinished."""

    result: Callable[[], object]
    cancel: Callable[[], None] = lambda: None


def fixture_changes(
    run: RunSpec,
    store: ResultStore,
    path: Path,
    progress: Progress = Silent(),
    compute: bool = True,
    ref: Reference | None = None,
) -> Started:
    """The evaluation part of a check, begun: the reference's committed checkpoints evaluated
    (``compute``; else read from the store), every number against the reference's (``bench check``,
    and ``bench selftest`` on a GPU). Where the fixtures are evaluated in a child process, it runs
    while the caller goes on (the retraining of a check); ``result()`` waits for the numbers and
    compares them. ``ref``: the file at ``path`` already read."""
    suite = run.suite
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
    numbers = fixture_numbers(run, store, pinned, progress, compute)
    return Started(lambda: compare(ref.numbers, numbers.result(), suite), numbers.cancel)


def fixture_numbers(
    run: RunSpec, store: ResultStore, pinned: dict[tuple[str, int], Path], progress: Progress, compute: bool
) -> Started:
    """results.csv rows of the committed checkpoints' cells, evaluated (``compute``) or read from
    the store, in the card's portable numerics, begun: here, at once, when this process already runs
    them (or the card asks for none); else in a child process started with that environment, which
    runs on (one thread, its output in a log) until ``result()`` waits for it."""
    suite = run.suite
    level = suite.check.portable
    if not level or portable_active(level):
        seeds = tuple(sorted({seed for _, seed in pinned}))
        if compute:
            cells = run_suite(run, store, SerialExecutor(run, progress=progress), pinned=pinned, seeds=seeds).cells
        else:
            cells = plan(run, store, seeds=seeds, known=pinned_checkpoints(suite, pinned)).cells
        rows = csv_table(_columns(suite, store, cells, "committed checkpoints").results)
        return Started(lambda: rows)
    if run.dev.type != "cpu":
        raise BenchError(
            f"suite {suite.name!r}: its committed checkpoints are evaluated in portable CPU numerics ([check] "
            f"portable = {level!r}); run the check with --device cpu, or set portable = '' in the card"
        )
    tmp = Path(tempfile.mkdtemp(prefix="bench-fixtures-"))
    out, log = tmp / "fixtures.json", tmp / "fixtures.log"
    args = ["check-fixtures", suite.path or suite.name, "--store", str(store.path), "--workdir", str(run.workdir)]
    args += [f"--pin={m}:{s}:{p}" for (m, s), p in pinned.items()]
    args += ["--out", str(out), *(["--data-root", str(run.data_root)] if run.data_root else [])]
    args += [] if compute else ["--no-run"]
    progress.log(f"evaluating the committed checkpoints in portable numerics ({level}, one thread) alongside")
    with open(log, "w") as sink:  # a file, not a pipe: a child that writes much never blocks on it
        child = subprocess.Popen(
            [sys.executable, "-m", "bench", *args], env=portable_child_environment(level), stdout=sink, stderr=sink
        )

    def wait() -> pd.DataFrame:
        try:
            if child.poll() is None:
                progress.log("waiting for the portable evaluation of the committed checkpoints")
            code = child.wait()
            if code != 0 or not out.is_file():
                tail = " | ".join(log.read_text(errors="replace").strip().splitlines()[-3:])
                raise BenchError(
                    f"suite {suite.name!r}: evaluating the committed checkpoints in portable numerics ({level}) "
                    f"failed (exit {code}): {tail}"
                )
            return pd.DataFrame(json.loads(out.read_text()))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def cancel() -> None:  # the caller failed first: the child must not outlive the check
        if child.poll() is None:
            child.kill()
            child.wait()
        shutil.rmtree(tmp, ignore_errors=True)

    return Started(wait, cancel)


def check_against(
    run: RunSpec,
    store: ResultStore,
    path: Path,
    progress: Progress = Silent(),
    compute: bool = True,
    ref: Reference | None = None,
    fixtures_only: bool = False,
    executor=None,
) -> CheckResult:
    """The fixtures' numbers against the reference's, then the suite's seeds trained and evaluated
    (``compute``, on ``executor`` where given; else read from the store) against the reference's
    seed spread."""
    suite = run.suite
    ref = ref or read_reference(path, suite)
    result = CheckResult()
    changes = fixture_changes(run, store, path, progress, compute, ref)  # a child process runs on beside
    try:
        if not fixtures_only:
            cells = run_suite(run, store, executor).cells if compute else plan(run, store).cells
    except BaseException:
        changes.cancel()
        raise
    result.changes = changes.result()
    if fixtures_only:
        return result
    data = _columns(suite, store, cells, "trained seeds")
    per_seed = headline_per_seed(data.results, report_specs(suite))
    result.drifts = compare_training(
        ref.columns, training_columns(per_seed, data.trainings), suite.check.false_alarm, suite.check.training_floor
    )
    return result


CHANGE_HEADERS = ["model", "seed", "evaluation", "param", "statistic", "reference", "current", "delta", "tolerance"]
DRIFT_HEADERS = ["model", "column", "reference mean ± SD", "current mean", "delta", "allowed"]


def _change_row(c: Change) -> list:
    param = "" if c.param is None else f"{c.param:g}"
    return [c.model, c.seed, c.evaluation, param, c.statistic, f"{c.reference:.6g}", f"{c.current:.6g}"] + [
        f"{c.delta:+.3g}",
        f"{c.tolerance:.3g}",
    ]


def _drift_row(d: Drift) -> list:
    spread = f"{d.reference_mean:.4g} ± {d.reference_sd:.2g} (k={d.k_reference})"
    return [d.model, d.column, spread, f"{d.current_mean:.4g} (k={d.k_current})", f"{d.delta:+.3g}", f"{d.allowed:.3g}"]


def check_text(name: str, against: Path, result: CheckResult, fixtures_only: bool = False) -> str:
    """What ``bench check`` prints: the numbers that moved (a table each part), and a verdict
    line per part."""
    from tabulate import tabulate

    lines = []
    moved = [c for c in result.changes if c.delta != 0 or c.status != "ok"]
    drifted = [d for d in result.drifts if d.delta != 0 or d.status != "ok"]
    tables = {"changes": (moved, _change_row, CHANGE_HEADERS), "drifts": (drifted, _drift_row, DRIFT_HEADERS)}

    def table(part: str) -> None:
        items, row, headers = tables[part]
        if items:
            lines.append(tabulate([[*row(x), x.status] for x in items], headers=[*headers, "status"]))

    table("changes")
    bad = [c for c in result.changes if c.status != "ok"]
    lines.append(
        f"{name}: evaluation of the committed checkpoints: {len(result.changes)} numbers checked against {against}; "
        f"{len(moved) - len(bad)} moved within tolerance, {len(bad)} regressions"
    )
    table("drifts")
    bad = [d for d in result.drifts if d.status != "ok"]
    if fixtures_only:
        return "\n".join([*lines, f"{name}: training: not checked (--fixtures-only)"])
    lines.append(
        f"{name}: training: {len(result.drifts)} columns (mean over seeds) checked against the reference's seed "
        f"spread; {len(drifted) - len(bad)} moved within what it allows, {len(bad)} regressions"
    )
    return "\n".join(lines)
