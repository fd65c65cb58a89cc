"""The ``bench`` command line. Errors caused by input print one line and exit 2; Ctrl-C keeps
what is finished (epochs, cells) and says how to resume."""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from bench.config import as_dict, canonical_json
from bench.errors import BenchError

app = typer.Typer(
    add_completion=False,
    rich_markup_mode="markdown",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="neuroreg-bench: train brain-regularized classifiers and benchmark their robustness.",
)
zoo = typer.Typer(
    no_args_is_help=True, rich_markup_mode="markdown", help="The model zoo: cards in models/, training, export."
)
app.add_typer(zoo, name="zoo")
neural = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode="markdown",
    help="Neural targets: simulate recordings, fit predictive models, build and validate targets.",
)
app.add_typer(neural, name="neural")
out = Console(soft_wrap=True)
# progress and per-epoch logs; wide lines when written to a file or a CI log, not 80 columns
err = Console(stderr=True, log_path=False, width=None if sys.stderr.isatty() else 200)

Device = Annotated[str, typer.Option(help="auto, cpu or cuda.")]
Workdir = Annotated[Path, typer.Option(help="Where checkpoints (and by default the store) live.")]
Store = Annotated[Path | None, typer.Option(help="Results database (default WORKDIR/results.sqlite).")]
DataRoot = Annotated[Path | None, typer.Option(help="Folder with datasets (before $BENCH_DATA).")]
Reports = Annotated[Path, typer.Option(help="Leaderboards go to REPORTS/SUITE/.")]


@app.callback()
def _global_options(
    portable: Annotated[
        bool,
        typer.Option(
            "--portable",
            help="Pin every numeric library to one code path at one thread, so that CPU results are "
            "bit-identical across x86 machines with AVX2 (slower; BENCH_PORTABLE=baseline for older CPUs). Give it "
            "first: bench --portable run quick.",
        ),
    ] = False,
) -> None:
    from bench.numerics import portable_level

    if portable and portable_level() is None:  # only the bench program itself can restart Python with it
        raise BenchError(
            "--portable: give it to the bench program itself (bench --portable COMMAND ...), or set "
            "BENCH_PORTABLE=avx2 before Python starts"
        )


def say(text: str) -> None:
    """Plain output: no rich markup or highlighting inside data (paths, tables)."""
    out.print(text, markup=False, highlight=False)


class RichProgress:
    """Adapts bench.runtime.Progress to one shared rich progress display."""

    def __init__(self, display: Progress):
        self.display, self.task = display, None

    def start(self, description: str, total: int) -> None:
        if self.task is not None:
            self.display.update(self.task, visible=False)
        self.task = self.display.add_task(description, total=total)

    def advance(self, n: int = 1) -> None:
        self.display.advance(self.task, n)

    def log(self, message: str) -> None:
        self.display.console.log(message)


def _display() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=False,
    )


def _store_path(workdir: Path, store: Path | None) -> Path:
    return store if store is not None else workdir / "results.sqlite"


def _open_store(workdir: Path, store: Path | None, create: bool = True):
    """The results store, saying which one is used and whether it is new (a mistyped --store
    would otherwise silently recompute everything into a new file)."""
    from bench.store import ResultStore

    db = ResultStore(_store_path(workdir, store), create=create)
    err.print(f"store: {db.path}" + (" (new)" if db.created else ""), markup=False, highlight=False)
    return db


Deterministic = Annotated[
    bool,
    typer.Option(
        "--deterministic",
        help="CUDA: deterministic cuBLAS/cuDNN and torch algorithms (slower). CPU runs are deterministic already.",
    ),
]


ExecutorOpt = Annotated[
    str | None,
    typer.Option(
        "--executor",
        help="serial (this process), local (worker "
        "processes), ray or slurm (default: the suite card's execution table, else serial).",
    ),
]
Workers = Annotated[int | None, typer.Option(help="local: worker processes; slurm: jobs at once.")]
Threads = Annotated[int | None, typer.Option(help="Torch threads per process (workers default to 1).")]
Address = Annotated[str | None, typer.Option(help="ray: an existing cluster ('auto' or host:port).")]
Partition = Annotated[str | None, typer.Option(help="slurm: the partition.")]
TimeMin = Annotated[int | None, typer.Option("--time", help="slurm: minutes per job.")]
Gpus = Annotated[int | None, typer.Option(help="ray, slurm: GPUs per training job.")]
MemGb = Annotated[int | None, typer.Option("--mem", help="slurm: GB of memory per job.")]
TrustCode = Annotated[
    bool,
    typer.Option(
        "--trust-code",
        help="Let external cards of kind python, torchscript or exported run their author's code "
        "(as their card's trust_code = true does).",
    ),
]


@app.command()
def run(
    suite: Annotated[str, typer.Argument(help="Suite name (suites/NAME.toml) or a path to a card.")],
    device: Device = "auto",
    workdir: Workdir = Path(".bench"),
    store: Store = None,
    data_root: DataRoot = None,
    reports: Reports = Path("reports"),
    deterministic: Deterministic = False,
    executor: ExecutorOpt = None,
    workers: Workers = None,
    threads: Threads = None,
    address: Address = None,
    partition: Partition = None,
    time: TimeMin = None,
    gpus: Gpus = None,
    mem: MemGb = None,
    trust_code: TrustCode = False,
    seeds: Annotated[
        str | None,
        typer.Option(help="Only these of the suite's seeds, comma-separated (a long suite a few seeds at a time)."),
    ] = None,
) -> None:
    """Train what is missing, evaluate what is missing, print and write the leaderboard."""
    from bench.cards import load_suite_card
    from bench.executors import make_executor, merged_options
    from bench.external.sources import trust_code as trust
    from bench.plan import RunSpec
    from bench.report import build_leaderboard, report_destination, write_reports
    from bench.suite import run_suite

    trust(trust_code)

    card = load_suite_card(suite)
    chosen = _suite_seeds(card, seeds)
    options = _execution(merged_options, card, executor, workers, threads, address, partition, time, gpus, mem)
    spec = RunSpec(card, workdir, store, device, data_root, deterministic)
    report_destination(reports, card.name)  # a report that cannot be written fails before the work
    with _open_store(workdir, store) as db:
        with _display() as display:
            runner = make_executor(options, spec, RichProgress(display))
            try:
                summary = run_suite(spec, db, runner, seeds=chosen)
            finally:
                runner.close()
        trained = ", ".join(summary.trained) or "none"
        out.print(
            f"[bold]{card.name}[/] v{card.version}: trained {trained}; evaluated {summary.evaluated} cells, "
            f"{summary.skipped} already in the store ({summary.seconds:.0f} s: "
            + ", ".join(f"{k} {v:.0f} s" for k, v in summary.phases.items())
            + ")"
        )
        board = build_leaderboard(summary.plan, db)
        dest = write_reports(board, reports)
    _print_board(board, dest)


@app.command()
def report(
    suite: Annotated[str, typer.Argument(help="Suite name or card path.")],
    workdir: Workdir = Path(".bench"),
    store: Store = None,
    reports: Reports = Path("reports"),
    format: Annotated[str, typer.Option("--format", help="What to print: text, markdown or latex.")] = "text",
    device: Device = "auto",
) -> None:
    """Re-render a suite's leaderboard from the store (no training, no evaluation)."""
    from bench.cards import load_suite_card
    from bench.plan import RunSpec, plan
    from bench.report import build_leaderboard, report_destination, write_reports

    if format not in ("text", "markdown", "latex"):
        raise BenchError(f"--format {format!r}: expected text, markdown or latex")
    card = load_suite_card(suite)
    report_destination(reports, card.name)
    with _open_store(workdir, store, create=False) as db:
        board = build_leaderboard(plan(RunSpec(card, workdir, store, device), db), db)
        dest = write_reports(board, reports)
    if format == "latex":
        say(board.latex())
    elif format == "markdown":
        say((dest / "leaderboard.md").read_text())
    else:
        _print_board(board, dest)


@app.command()
def analyze(
    folder: Annotated[Path, typer.Argument(help="A report folder (reports/SUITE).")],
    interval: Annotated[
        str | None,
        typer.Option(help="t, crossed-bootstrap or hierarchical-bootstrap (default: the suite card's [compare])."),
    ] = None,
    suite: Annotated[str | None, typer.Option(help="The suite card, for a folder that keeps no suite.toml.")] = None,
    write: Annotated[bool, typer.Option("--write", help="Re-render the whole folder from its own data.")] = False,
) -> None:
    """Recompute a report's endpoints, paired comparisons and tables from the report folder alone
    (results.csv, outcomes.csv.gz, cells.json, trainings.json, suite.toml): no store. Says whether
    the intervals reproduce the folder's deltas.csv; --write re-renders the folder."""
    import dataclasses

    import pandas as pd

    from bench.cards import find_card
    from bench.plan import report_specs
    from bench.report.bundle import read_bundle, reproduction
    from bench.report.leaderboard import inference_of, leaderboard_of, publish
    from bench.stats import INTERVALS

    if interval is not None and interval not in INTERVALS:
        raise BenchError(f"--interval {interval!r}: expected one of {', '.join(INTERVALS)}")
    data = read_bundle(folder, suite)
    how = inference_of(data.suite)
    how = dataclasses.replace(how, method=interval) if interval else how
    card = find_card("suites", data.suite.name, "suite")
    board = leaderboard_of(data, report_specs(data.suite), how, card_path=card)
    published = folder / "deltas.csv"
    if published.is_file() and how.method == inference_of(data.suite).method:
        say(reproduction(pd.read_csv(published), board.deltas))
    if write:
        board = dataclasses.replace(board, pictures_from=folder)  # the folder's own data (and pictures)
        dest = publish(board, folder)
        _print_board(board, dest)
    else:
        _print_board(board, None)


def _execution(merged_options, card, executor, workers, threads, address, partition, time, gpus, mem):
    """The suite's [execution] table with the command's options on top, validated."""
    from bench.config import parse

    if executor is not None and executor not in ("serial", "local", "ray", "slurm", "slurm-local"):
        raise BenchError(f"--executor {executor!r}: expected serial, local, ray or slurm")
    options = merged_options(
        card,
        executor=executor,
        workers=workers,
        threads=threads,
        address=address,
        partition=partition,
        time_min=time,
        gpus=gpus,
        mem_gb=mem,
    )
    return parse(type(options), as_dict(options), "command line")  # the same bounds as the card's


def _print_board(board, dest: Path | None) -> None:
    from bench.report.render import board_text

    say(board_text(board))
    for flag in board.flags:
        out.print(f"[yellow]flag:[/] {flag}", markup=True, highlight=False)
    if board.missing:
        out.print(f"[yellow]{len(board.missing)} cells missing from the store[/]")
    if dest is not None:
        out.print(
            f"wrote {dest}/: leaderboard.md, index.html, results.csv, outcomes.csv.gz, deltas.csv, plots, models/, "
            "robustbench/"
        )


@app.command()
def selftest(
    device: Device = "auto",
    scale: Annotated[float, typer.Option(help="Sizes x this (0.1: the CPU dry run of a GPU self-test).")] = 1.0,
    phase: Annotated[
        list[str] | None, typer.Option("--phase", help="Run only these phases (default: all that apply).")
    ] = None,
    out: Annotated[Path, typer.Option(help="Summary JSON.")] = Path("selftest.json"),
) -> None:
    """Check a device against the CPU: numerics of committed checkpoints, determinism, every
    evaluation, throughput. Every phase runs whatever failed before it; exit 1 if any failed."""
    from tabulate import tabulate

    from bench.io import atomic_write_text
    from bench.runtime import resolve_device
    from bench.selftest import PHASES, run_selftest, summary_json

    unknown = sorted(set(phase or []) - set(PHASES))
    if unknown:
        raise BenchError(f"--phase {', '.join(unknown)}: expected one of {', '.join(PHASES)}")
    if not 0 < scale <= 1:
        raise BenchError(f"--scale {scale:g}: expected a value in (0, 1]")
    phases = run_selftest(resolve_device(device), scale, phase, err.log)
    atomic_write_text(out, summary_json(phases) + "\n")
    rows = [
        [p.name, p.status, f"{p.seconds:.1f}", "; ".join(p.notes)[:120]]
        + [", ".join(f"{k} {v:.4g}" for k, v in p.figures.items() if isinstance(v, float))[:160]]
        for p in phases
    ]
    say(tabulate(rows, headers=["phase", "status", "s", "notes", "figures"]))
    say(f"wrote {out}")
    if any(p.status in ("fail", "error") for p in phases):
        raise typer.Exit(1)


@app.command()
def check(
    suite: Annotated[str, typer.Argument(help="Suite name or card path.")],
    against: Annotated[Path, typer.Option(help="Reference JSON, e.g. reports/SUITE/reference.json.")],
    update: Annotated[
        bool,
        typer.Option(
            "--update",
            help="Train the reference seeds, commit one checkpoint per model beside the reference and rewrite it.",
        ),
    ] = False,
    no_run: Annotated[bool, typer.Option("--no-run", help="Only read the store; do not train or evaluate.")] = False,
    fixtures_only: Annotated[
        bool, typer.Option("--fixtures-only", help="Only the evaluation of the committed checkpoints (no training).")
    ] = False,
    device: Device = "auto",
    workdir: Workdir = Path(".bench"),
    store: Store = None,
    data_root: DataRoot = None,
    deterministic: Deterministic = False,
) -> None:
    """Check a suite against a reference: the committed checkpoints' evaluation numbers (in portable
    numerics: the same bits on any x86 CPU) within the tolerances of the card's check table, and freshly
    trained seeds within the reference's seed spread. Exit 1 on a regression."""
    from bench.cards import load_suite_card
    from bench.executors import SerialExecutor, make_executor, merged_options
    from bench.plan import RunSpec
    from bench.suite.regression import check_against, check_text, update_reference

    card = load_suite_card(suite)
    ref = None
    if not update:
        from bench.check import read_reference

        ref = read_reference(against, card)  # a bad reference is reported before the store is opened
    spec = RunSpec(card, workdir, store, device, data_root, deterministic)
    with _open_store(workdir, store, create=not no_run) as db, _display() as display:
        runner = SerialExecutor(spec) if no_run else make_executor(merged_options(card), spec, RichProgress(display))
        try:
            if update:
                ref = update_reference(spec, db, against, runner, RichProgress(display))
                out.print(
                    f"wrote {against}: {len(ref.numbers)} evaluation numbers of {len(ref.fixtures)} committed "
                    f"checkpoints (beside it), {len(ref.columns)} training columns over seeds {ref.training_seeds}"
                )
                return
            result = check_against(spec, db, against, RichProgress(display), not no_run, ref, fixtures_only, runner)
        finally:
            runner.close()
    say(check_text(card.name, against, result, fixtures_only))
    if result.failed:
        raise typer.Exit(1)


@app.command("check-fixtures", hidden=True)
def check_fixtures(
    suite: str,
    out: Annotated[Path, typer.Option(help="Where the fixture numbers go (JSON records).")],
    pin: Annotated[list[str], typer.Option("--pin", help="MODEL:SEED:CHECKPOINT (repeat).")],
    no_run: Annotated[bool, typer.Option("--no-run")] = False,
    workdir: Workdir = Path(".bench"),
    store: Store = None,
    data_root: DataRoot = None,
) -> None:
    """bench check's child: evaluate committed checkpoints in the portable numerics this process
    was started with, and write their results.csv rows to OUT."""
    from bench.cards import load_suite_card
    from bench.io import atomic_write_text
    from bench.numerics import portable_level
    from bench.plan import RunSpec
    from bench.suite.regression import fixture_numbers

    card = load_suite_card(suite)
    if portable_level() != card.check.portable:
        raise BenchError(f"check-fixtures runs in portable mode {card.check.portable!r}; bench check starts it so")
    pinned = {}
    for item in pin:
        model, seed, path = item.split(":", 2)
        pinned[(model, int(seed))] = Path(path)
    spec = RunSpec(card, workdir, store, "cpu", data_root)
    with _open_store(workdir, store, create=not no_run) as db, _display() as display:
        err.print(f"evaluating the committed checkpoints in portable numerics ({card.check.portable}, one thread)")
        rows = fixture_numbers(spec, db, pinned, RichProgress(display), not no_run).result()
    atomic_write_text(out, json.dumps(rows.to_dict("records")))  # Infinity and NaN kept (pandas' JSON drops them)


@app.command()
def merge(
    suite: Annotated[
        str | None, typer.Argument(help="Merge only this suite's planned cells (others are refused).")
    ] = None,
    workdir: Workdir = Path(".bench"),
    store: Store = None,
    device: Device = "auto",
    source: Annotated[
        Path | None,
        typer.Option("--from", help="An export ('bench export') to merge, instead of the workers' cell files."),
    ] = None,
) -> None:
    """Merge the cell files workers wrote (WORKDIR/cells/), or an export (--from FILE), into
    the results store: each cell is checked first (types, ranges, consistency; with SUITE, that
    it is one of the suite's cells); a refused one is named, the rest merged. Idempotent, safe
    to run again and while workers still write."""
    from bench.store.cellfiles import merge as merge_cells
    from bench.store.export import import_results, read_export

    card = None
    if suite is not None:
        from bench.cards import load_suite_card

        card = load_suite_card(suite)
    lines = read_export(source, card and card.name) if source is not None else []
    with _open_store(workdir, store) as db:

        def expected() -> dict[str, dict] | None:
            if card is None:
                return None
            from bench.plan import RunSpec, plan, planned_meta

            cells = plan(RunSpec(card, workdir, store, device), db).cells
            return {c.key.digest: planned_meta(card, c) for c in cells if c.key is not None}

        if source is not None:
            merged, present, trained, bad = import_results(db, lines, expected)
            say(f"merged {merged} cells and {trained} training records from {source} into {db.path}; "
                f"{present} cells were already there")  # fmt: skip
        else:
            merged, present, bad = merge_cells(db, workdir, expected())
            say(f"merged {merged} cell files into {db.path}; {present} were already there")
    for line in bad:
        out.print(
            f"[yellow]refused {'line of ' + str(source) if source else 'cell file (left in place)'}:[/] {escape(line)}"
        )
    if bad:
        raise typer.Exit(1)


@app.command("export")
def export_cmd(
    suite: Annotated[str, typer.Argument(help="Suite name or card path.")],
    to: Annotated[
        Path,
        typer.Option(
            help="The file to write (gzip'd JSON lines), e.g. reports/exports/SUITE.jsonl.gz (not inside reports/SUITE/, which a report replaces whole)."
        ),
    ],
    workdir: Workdir = Path(".bench"),
    store: Store = None,
    device: Device = "auto",
) -> None:
    """Write the suite's stored cells and the training records of their checkpoints (no
    weights) to one file: what 'bench merge SUITE --from FILE' puts into a store on another
    machine, where the run then resumes with only what is still missing."""
    from bench.cards import load_suite_card
    from bench.plan import RunSpec, plan
    from bench.store.export import export_results

    card = load_suite_card(suite)
    with _open_store(workdir, store, create=False) as db:
        todo = plan(RunSpec(card, workdir, store, device), db)
        cells, trainings = export_results(db, todo, to)
    say(f"exported {cells} of {len(todo.cells)} cells of {card.name} and {trainings} training records to {to}")


@app.command()
def status(
    suite: Annotated[str, typer.Argument(help="Suite name or card path.")],
    device: Device = "auto",
    workdir: Workdir = Path(".bench"),
    store: Store = None,
) -> None:
    """What of a suite is done, running, queued or missing: trainings, cells (stored, as files
    not yet merged, running), and the Slurm jobs of the last run."""
    from bench.cards import load_suite_card
    from bench.plan import RunSpec
    from bench.suite.status import suite_status

    card = load_suite_card(suite)
    with _open_store(workdir, store, create=False) as db:
        for line in suite_status(RunSpec(card, workdir, store, device), db):
            say(line)


@app.command()
def sweep(
    model: Annotated[str, typer.Argument(help="A regularized model card (name or path).")],
    alpha: Annotated[list[float], typer.Option("--alpha", help="An alpha of the grid (repeat).")],
    threshold: Annotated[
        list[float] | None,
        typer.Option("--threshold", help="A threshold of the grid, for thresholded targets (repeat)."),
    ] = None,
    seeds: Annotated[str, typer.Option(help="Training seeds, comma-separated.")] = "0,1,2",
    level: Annotated[float, typer.Option(help="The Gaussian noise level of the robustness rule.")] = 0.3,
    images: Annotated[
        int, typer.Option(help="Validation images the rule is measured on (at most the validation split's).")
    ] = 1000,
    device: Device = "auto",
    workdir: Workdir = Path(".bench"),
    store: Store = None,
    data_root: DataRoot = None,
    reports: Reports = Path("reports"),
) -> None:
    """Choose alpha (and threshold) by the follow-up's rule: regularized/baseline clean accuracy >= 0.9
    and robust accuracy ratio > 1 at the noise level, over seeds; writes REPORTS/sweeps/MODEL/."""
    from bench.cards import load_model_card
    from bench.io import ensure_writable_folder
    from bench.plan import RunSpec
    from bench.suite.sweep import choose, run_sweep, sweep_suite, write_sweep

    card = load_model_card(model)
    seed_list = _int_list(seeds, "--seeds")
    if not 0 < level <= 1:
        raise BenchError(f"--level {level:g}: expected a noise level in (0, 1]")
    if any(not 0 < a <= 1e4 for a in alpha):
        raise BenchError("--alpha: expected values in (0, 10000]")
    if not 1 <= images <= 100_000_000:
        raise BenchError(f"--images {images}: expected a positive number of test images")
    ensure_writable_folder(reports, "the reports folder (--reports)", "pass --reports to a writable folder")
    suite, points = sweep_suite(card, alpha, threshold or [None], seed_list, level, images)
    with _open_store(workdir, store) as db, _display() as display:
        table, measured = run_sweep(
            RunSpec(suite, workdir, store, device, data_root), db, points, level, RichProgress(display)
        )
    dest = write_sweep(table, card, seed_list, level, measured, reports)
    say(table.to_string(index=False))
    chosen = choose(table)
    say(
        f"chosen: {'none passes the rule' if chosen is None else chosen['model']} (rule: clean ratio >= 0.9 and robust "
        f"ratio > 1 at Gaussian noise {level:g}, means over seeds {list(seed_list)}, on {measured} validation images); "
        f"wrote {dest}"
    )


def _suite_seeds(card, text: str | None) -> tuple[int, ...] | None:
    """--seeds: a subset of the suite card's seeds (None: all of them)."""
    if text is None:
        return None
    chosen = _int_list(text, "--seeds")
    if unknown := [s for s in chosen if s not in card.seeds]:
        raise BenchError(
            f"--seeds {text!r}: {unknown} are not seeds of suite {card.name!r} ({', '.join(map(str, card.seeds))})"
        )
    return chosen


def _int_list(text: str, option: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise BenchError(f"{option} {text!r}: expected integers separated by commas, e.g. 0,1,2") from None
    if not values or len(set(values)) != len(values):
        raise BenchError(f"{option} {text!r}: expected distinct integers separated by commas, e.g. 0,1,2")
    return values


@app.command()
def perf(
    device: Device = "auto",
    width: Annotated[int, typer.Option(help="ResNet width (64: the paper's network).")] = 64,
    size: Annotated[int, typer.Option(help="Image side in pixels (32: grayscale CIFAR-10).")] = 32,
    batch: Annotated[int, typer.Option(help="Training batch size.")] = 64,
    processes: Annotated[
        list[int] | None,
        typer.Option(
            "--processes",
            help="Also time N baseline trainings at once, one process each (repeat the option): how "
            "many models share this device well (bench run --executor local --workers N).",
        ),
    ] = None,
    compile: Annotated[
        str | None,
        typer.Option(
            "--compile",
            help="Also time the step compiled in this torch.compile mode (default, reduce-overhead, "
            "max-autotune, max-autotune-no-cudagraphs), with its compile time: whether BENCH_COMPILE pays here.",
        ),
    ] = None,
) -> None:
    """Throughput here: training images/s per regularizer kind (against the FLOP ratio),
    evaluation images/s per attack, and paper-table1's training time and (an upper bound)
    evaluation time per model on this machine."""
    from bench.perf import Shapes, measure, perf_text
    from bench.runtime import resolve_device
    from bench.train.speed import checked_compile_mode

    if not (1 <= width <= 1024 and 8 <= size <= 512 and 1 <= batch <= 4096):
        raise BenchError("bench perf: --width 1..1024, --size 8..512 and --batch 1..4096")
    if any(not 1 <= n <= 64 for n in processes or []):
        raise BenchError("bench perf: --processes takes 1..64")
    compile = checked_compile_mode(compile or "", "bench perf --compile")
    dev = resolve_device(device)
    shapes = Shapes(width=width, size=size, batch=batch)
    say(f"bench perf on {dev}: resnet18 width {width}, {size}x{size} gray, batch {batch}, k = {shapes.pairs}")
    report = measure(shapes, dev, compile=compile, processes=tuple(processes or ()))
    say(perf_text(report, shapes))


@app.command()
def suites() -> None:
    """List the suite cards on the search path."""
    from bench.cards import card_names, load_suite_card

    for name in card_names("suites"):
        card = load_suite_card(name)
        out.print(f"{name:24s} v{card.version}  {card.dataset:14s} {len(card.models)} models  {card.description}")


@zoo.command("list")
def zoo_list() -> None:
    """List the model cards."""
    from bench.cards import card_names, load_model_card

    for name in card_names("models"):
        card = load_model_card(name)
        arch = card.arch if card.external else f"{card.arch}/w{card.width:<3d}"
        try:
            identity = card.card_hash
        except BenchError as exc:  # an external card whose file is missing: listed, with why
            identity = f"({exc})"
        out.print(f"{name:28s} {arch:22s} {card.dataset or '(any)':14s} {card.regularizer_label:16s} {identity}")


@zoo.command("show")
def zoo_show(name: str) -> None:
    """Show a model card as parsed and validated, with its hash."""
    from bench.cards import load_model_card

    card = load_model_card(name)
    out.print(f"{card.name} ({card.path}), regularizer {card.regularizer_label}, card hash {card.card_hash}")
    out.print_json(canonical_json(card))


@zoo.command("train")
def zoo_train(
    name: str,
    seed: Annotated[int, typer.Option()] = 0,
    device: Device = "auto",
    workdir: Workdir = Path(".bench"),
    data_root: DataRoot = None,
    deterministic: Deterministic = False,
) -> None:
    """Train one model seed (resumes an interrupted run; does nothing if already trained)."""
    from bench.cards import load_model_card
    from bench.train.checkpoint import load_checkpoint
    from bench.train.trainer import train

    card = load_model_card(name)
    if card.external:
        raise BenchError(f"{card.path}: an external model (trained elsewhere); there is nothing to train")
    with _display() as display:
        path = train(card, seed, workdir, device, data_root, RichProgress(display), deterministic=deterministic)
    ckpt = load_checkpoint(path)
    h = ckpt["history"][ckpt["best_epoch"] - 1]
    out.print(f"{path}: best epoch {ckpt['best_epoch']}, val_acc {h['val_acc']:.4f}, checkpoint {ckpt['state_hash']}")


@zoo.command("export")
def zoo_export(
    name: str,
    to: Annotated[Path, typer.Option(help="Destination file.")],
    seed: Annotated[int, typer.Option()] = 0,
    workdir: Workdir = Path(".bench"),
    device: Annotated[str, typer.Option(help="Which training to export: the one made on auto, cpu or cuda.")] = "auto",
) -> None:
    """Copy a trained model's self-contained checkpoint (load it with bench.load_model)."""
    from bench.cards import load_model_card
    from bench.io import atomic_copy
    from bench.numerics import training_numerics
    from bench.runtime import resolve_device
    from bench.train.checkpoint import load_checkpoint
    from bench.train.trainer import trained_path

    card = load_model_card(name)
    if card.external:
        raise BenchError(f"{card.path}: an external model; its file is {card.file}, there is no export of it")
    path = trained_path(workdir, card, seed, training_numerics(resolve_device(device)))
    if path is None:
        raise BenchError(f"{name} seed {seed} is not trained in {workdir}; run 'bench zoo train {name} --seed {seed}'")
    load_checkpoint(path)  # a corrupt file is an error, not a copy
    atomic_copy(path, to)
    out.print(f"wrote {to}")


Scans = Annotated[list[Path], typer.Argument(help="Sensorium-layout scan folders or .npz/.h5 files.")]


@neural.command("simulate")
def neural_simulate(
    out: Annotated[Path, typer.Option(help="Folder to write (Sensorium layout).")],
    seed: int = 0,
    neurons: int = 200,
    images: int = 1000,
    oracle: int = 50,
    repeats: int = 10,
    noise: str = "poisson",
    mean_rate: float = 0.3,
    image_dir: Annotated[str, typer.Option(help="Natural images to cut stimuli from.")] = "",
) -> None:
    """Simulate a V1-like population responding to natural image patches; keeps the ground truth."""
    from bench.config import parse
    from bench.neural.pipeline import simulate_to_folder
    from bench.neural.simulate import SimulationParams

    params = parse(
        SimulationParams,
        {
            "seed": seed,
            "n_neurons": neurons,
            "n_images": images,
            "n_oracle": oracle,
            "n_repeats": repeats,
            "noise": noise,
            "mean_rate": mean_rate,
            "image_dir": image_dir,
        },
        "command line",
    )
    rec, snr = simulate_to_folder(params, out)
    say(
        f"wrote {out}: {rec.n_neurons} neurons, {len(rec.images)} images, {len(rec.trial_image)} trials; "
        f"median oracle signal/noise variance {snr:.2f}"
    )


@neural.command("fit")
def neural_fit(
    scans: Scans,
    seeds: Annotated[list[int] | None, typer.Option("--seed", help="Model seeds (default 0).")] = None,
    epochs: int = 40,
) -> None:
    """Fit the predictive model to each scan and report its prediction quality."""
    import dataclasses

    from bench.neural.pipeline import read_scans
    from bench.neural.predictive import ModelParams, fit

    params = dataclasses.replace(ModelParams(), max_epochs=epochs)
    for rec in read_scans(scans):
        for seed in seeds or [0]:

            def log(epoch, corr, source=rec.source, seed=seed):
                err.log(f"{source} seed {seed} epoch {epoch}: validation correlation {corr:.3f}")

            fm = fit(rec, params, seed, progress=log)
            say(
                f"{rec.source} seed {seed}: {fm.epochs} epochs; mean correlation validation "
                f"{fm.val_correlation.mean():.3f}, held-out oracle trials {fm.test_correlation.mean():.3f}"
            )


@neural.command("target")
def neural_target(
    scans: Scans,
    out: Annotated[Path, typer.Option(help="Artifact file to write.")],
    kind: Annotated[str, typer.Option(help="neural (model predictions) or raw (single trials).")] = "neural",
    seeds: Annotated[
        list[int] | None, typer.Option("--seed", help="Predictive-model seeds to average (default 0).")
    ] = None,
    epochs: int = 40,
) -> None:
    """Build a similarity target from recordings: weighted predictions averaged over scans and seeds."""
    import dataclasses

    from bench.neural.pipeline import build_target_file, read_scans
    from bench.neural.predictive import ModelParams
    from bench.neural.target import validation_text

    if kind not in ("neural", "raw"):
        raise BenchError(f"--kind {kind!r}: expected neural or raw")
    recs = read_scans(scans)
    params = dataclasses.replace(ModelParams(), max_epochs=epochs)
    seeds = seeds or [0]
    recipe = {"kind": kind, "scans": [str(p) for p in scans], "model": as_dict(params), "model_seeds": list(seeds)}
    meta = build_target_file(recs, kind, params, tuple(seeds), out, recipe, err.log)
    say(f"wrote {out}: {meta['n_stimuli']} stimuli, {meta['n_pairs']} pairs")
    say(validation_text(meta))


@neural.command("efficiency")
def neural_efficiency(
    images: Annotated[
        list[int] | None, typer.Option("--images", help="Recorded image counts (default 500,1000,2000,5000).")
    ] = None,
    seeds: Annotated[list[int] | None, typer.Option("--seed", help="Predictive-model seeds (default 0,1,2).")] = None,
    neurons: int = 200,
    epochs: Annotated[int, typer.Option(help="Predictive model: maximum epochs (early stopping decides).")] = 12,
    channels: int = 16,
    layers: int = 2,
    out: Annotated[Path, typer.Option(help="Folder for efficiency.csv and efficiency.md.")] = Path(
        "reports/neural-efficiency"
    ),
) -> None:
    """How many recorded images a neural target needs: model-denoised vs single-trial similarity
    against the simulated population's noise-free truth, per image count and model seed."""
    import dataclasses

    import pandas as pd
    from tabulate import tabulate

    from bench.io import atomic_write_text
    from bench.neural.efficiency import efficiency_rows
    from bench.neural.predictive import ModelParams
    from bench.neural.simulate import SimulationParams

    sizes = images or [500, 1000, 2000, 5000]
    if min(sizes) < 10:
        raise BenchError(f"--images {min(sizes)}: a recording needs at least 10 images")
    model = dataclasses.replace(
        ModelParams(), channels=channels, layers=layers, hidden_kern=5, lr=0.01, max_epochs=epochs
    )
    sim = SimulationParams(n_neurons=neurons)
    rows = pd.DataFrame(efficiency_rows(sim, sizes, model, seeds or [0, 1, 2], err.log))
    recipe = f"simulation {as_dict(sim)}; model {as_dict(model)}; model seeds {seeds or [0, 1, 2]}"
    table = tabulate(rows.to_dict("records"), headers="keys", tablefmt="github", floatfmt=".3f")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "efficiency.csv", rows.to_csv(index=False))
    atomic_write_text(out / "efficiency.md", f"# Neural target: data efficiency\n\n{recipe}\n\n{table}\n")
    say(table)
    say(f"wrote {out / 'efficiency.csv'} and {out / 'efficiency.md'}")


@neural.command("validate")
def neural_validate(target: Annotated[Path, typer.Argument(help="A target artifact.")]) -> None:
    """Print a target's validation report (similarity correlations on the oracle images)."""
    from bench.neural.target import load_artifact, validation_text

    _, meta = load_artifact(target)
    say(f"{target}: {meta['kind']} target, {meta['n_stimuli']} stimuli, {len(meta['scans'])} scan(s)")
    say(validation_text(meta))


def os_error_line(exc: OSError) -> str:
    """'PATH: what went wrong; what to do' for a file-system error anywhere in a command."""
    where = exc.filename or "a file"
    fixes = {
        errno.EACCES: "make it writable (or readable), or choose another path with the command's options",
        errno.EROFS: "the file system is read-only; choose a writable path",
        errno.ENOSPC: "the disk is full; free space and run the same command again (finished work is kept)",
        errno.ENOTDIR: "a part of the path is a file, not a folder; choose another path",
        errno.EISDIR: "it is a folder where a file is expected; choose another path",
        errno.ENOENT: "it does not exist; check the path",
    }
    return f"{where}: {exc.strerror or exc}; {fixes.get(exc.errno, 'check the path and its permissions')}"


def main() -> None:
    from typer.exceptions import TyperException  # typer's own (vendored click) usage errors

    from bench.numerics import PORTABLE_VAR, reexec_portable

    try:
        if sys.argv[1:2] == ["--portable"]:
            os.environ.setdefault(PORTABLE_VAR, "avx2")
        reexec_portable(sys.argv[1:])  # returns unless the environment has to be completed first
        code = app(standalone_mode=False)  # typer returns typer.Exit's code here instead of raising
    except BenchError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except OSError as exc:  # the one place where file-system faults become an error line
        err.print(f"error: {os_error_line(exc)}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    except sqlite3.Error as exc:
        err.print(
            f"error: results store: {exc}; check the store file and its folder, or pass --store NEW",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(2)
    except (KeyboardInterrupt, typer.Abort):
        err.print("interrupted: finished epochs and cells are saved; run the same command again to resume")
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except TyperException as exc:
        exc.show()
        sys.exit(getattr(exc, "exit_code", 2))
    sys.exit(code if isinstance(code, int) else 0)
