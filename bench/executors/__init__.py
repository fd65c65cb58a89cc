"""Where a suite's units of work run: this process (serial, the default), worker processes on
this machine (local), a Ray cluster (ray), or a Slurm cluster through submitit (slurm). These are
existing engines; this package only hands them the two job functions (bench.executors.jobs), each
worker the cells planned for it, and merges what the workers leave: each finished cell is a file
in WORKDIR/cells/, and only this process writes the SQLite store."""

from __future__ import annotations

from dataclasses import dataclass, replace

from bench.cards import ExecutionSpec, ModelCard, SuiteCard
from bench.errors import BenchError
from bench.plan import Plan, RunSpec
from bench.registry import Registry
from bench.runtime import Progress, Silent

EXECUTORS: Registry[type] = Registry("executor")
EXECUTORS.lazy("serial", "bench.executors.serial:SerialExecutor")
EXECUTORS.lazy("local", "bench.executors.local:LocalExecutor")
EXECUTORS.lazy("ray", "bench.executors.ray_executor:RayExecutor")
EXECUTORS.lazy("slurm", "bench.executors.slurm:SlurmExecutor")
EXECUTORS.lazy("slurm-local", "bench.executors.slurm:LocalSlurmExecutor")  # submitit's local executor, no Slurm


@dataclass
class Executor:
    """Runs training jobs and cell jobs somewhere; subclasses say where (``_map``)."""

    run: RunSpec
    options: ExecutionSpec = ExecutionSpec()
    progress: Progress = Silent()

    def check(self) -> None:
        """Fail before any work when the engine cannot run here."""

    def close(self) -> None:
        """End what the executor started (worker processes)."""

    def _map(self, kind: str, fn, args: list[tuple], on_result) -> None:
        """Run ``fn(run, *a)`` for every ``a`` in ``args``; call ``on_result`` as each finishes.
        Raise after all finished if any failed."""
        raise NotImplementedError

    def train(self, missing: list[tuple[ModelCard, int]]) -> None:
        from bench.executors.jobs import train_job

        self.progress.start(f"train {self.run.suite.name} ({self.name})", len(missing))
        missing = sorted(missing, key=lambda m: -training_cost(m[0]))  # longest first: no lone job at the end
        self._map("train", train_job, [(c.name, s) for c, s in missing], lambda result: self.progress.advance())

    def evaluate(self, plan: Plan, store) -> int:
        """Compute the plan's pending cells on the workers (each job carries its cell and the
        checkpoints it reads) and merge each cell file into the store as it arrives; returns how
        many were merged."""
        from bench.executors.jobs import cell_job
        from bench.plan import planned_meta
        from bench.store.cellfiles import cells_dir, read_cell

        suite, pending = plan.run.suite, plan.pending
        merged = 0
        expected = {c.key.digest: planned_meta(suite, c) for c in pending}

        def merge(digest: str) -> None:
            nonlocal merged
            try:
                key, meta, output = read_cell(cells_dir(self.run.workdir) / f"{digest}.json", expected)
            except ValueError as exc:
                raise BenchError(f"cell file {digest}.json: {exc}") from None
            store.write_cell(key, output=output, **meta)
            merged += 1
            self.progress.advance()

        self.progress.start(f"evaluate {suite.name} ({self.name})", len(pending))
        jobs = [(c, {(n, c.seed): plan.checkpoints[(n, c.seed)] for n in c.reads}) for c in pending]
        self._map("cell", cell_job, jobs, merge)
        return merged

    @property
    def name(self) -> str:
        return type(self).__name__.removesuffix("Executor").lower()


def training_cost(card: ModelCard) -> float:
    """A training's relative cost, to start the longest first (an order, not a prediction):
    images seen, plus the regularizer's pair batches through the trunk (natural-image stimuli of
    a neural target are about 3x a 28x28 image's pixels)."""
    t = card.trainer
    seen = t.epochs * (t.train_images or 50_000)
    reg = card.regularizer
    if reg is None:
        return seen
    pixels = 3.0 if getattr(reg.target, "kind", "") == "neural" else 1.0
    return seen * (1 + 2 * reg.pairs_per_step / t.batch_size * pixels)


def make_executor(options: ExecutionSpec, run: RunSpec, progress: Progress = Silent()) -> Executor:
    """The executor of ``options``, checked before any work starts. Local workers = 0 means one
    per CPU core this process may use; one worker is no better than this process (then serial at
    one thread)."""
    if options.workers == 0:
        options = replace(options, workers=usable_cores())
        if options.executor == "local" and options.workers == 1:
            options = replace(options, executor="serial", threads=options.threads or 1)
    run = replace(run, threads=options.threads or 1)
    executor = EXECUTORS.get(options.executor)(run, options, progress)
    executor.check()
    return executor


def usable_cores() -> int:
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def merged_options(suite: SuiteCard, **given) -> ExecutionSpec:
    """The suite card's [execution] table, overridden by the options given on the command line."""
    return replace(suite.execution, **{k: v for k, v in given.items() if v is not None})


def missing_extra(package: str, extra: str) -> BenchError:
    return BenchError(
        f"the {extra} executor needs {package}, which is not installed; pip install -e '.[{extra}]' "
        f"(or pip install {package})"
    )


from bench.executors.serial import SerialExecutor  # noqa: E402  (the default: run_suite builds it without a registry lookup)

__all__ = ["EXECUTORS", "Executor", "SerialExecutor", "make_executor", "merged_options"]
