"""A Slurm cluster through submitit: one job array for the trainings, then one for the cells.
A preempted or timed-out job is requeued (``checkpoint``), and a training resumes from its last
epoch. The job ids are kept in WORKDIR/slurm/jobs.json for ``bench status``. Workers must see the
workdir (a shared file system); ``cluster = "local"`` runs the arrays as local processes
(submitit's LocalExecutor), to try a setup without Slurm."""

from __future__ import annotations

import json
from pathlib import Path

from bench.errors import BenchError
from bench.executors import Executor, missing_extra
from bench.io import atomic_write_text


def _submitit():
    try:
        import submitit
    except ImportError:
        raise missing_extra("submitit", "slurm") from None
    return submitit


class Requeued:
    """A job submitit puts back in the queue when Slurm preempts or times it out."""

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, *args):
        return self.fn(*args)

    def checkpoint(self, *args):
        return _submitit().helpers.DelayedSubmission(self, *args)


class SlurmExecutor(Executor):
    cluster: str = "slurm"  # or "local": submitit's LocalExecutor

    def folder(self) -> Path:
        return Path(self.run.workdir) / "slurm"

    def check(self) -> None:
        submitit = _submitit()
        if self.cluster == "slurm" and submitit.AutoExecutor.which() != "slurm":
            raise BenchError(
                "--executor slurm: no Slurm here (sbatch not found); run it on a cluster's login node, or "
                "use --executor local"
            )

    def _executor(self, kind: str):
        submitit = _submitit()
        ex = submitit.AutoExecutor(folder=self.folder() / "%j", cluster=None if self.cluster == "slurm" else "local")
        params = {
            "timeout_min": self.options.time_min,
            "cpus_per_task": max(self.run.threads, 1),
            "name": f"bench-{self.run.suite.name}-{kind}",
        }
        if self.cluster == "slurm":
            params.update(
                slurm_partition=self.options.partition or None,
                slurm_mem=f"{self.options.mem_gb}G",
                slurm_gpus_per_node=self.options.gpus if kind == "train" else 0,
                slurm_array_parallelism=self.options.workers,
            )
        ex.update_parameters(**{k: v for k, v in params.items() if v is not None})
        return ex

    def _record(self, kind: str, jobs) -> None:
        path = self.folder() / "jobs.json"
        known = json.loads(path.read_text()) if path.is_file() else {}
        known[kind] = [str(j.job_id) for j in jobs]
        atomic_write_text(path, json.dumps({**known, "suite": self.run.suite.name, "cluster": self.cluster}, indent=1))

    def _map(self, kind: str, fn, args: list[tuple], on_result) -> None:
        ex = self._executor(kind)
        try:
            jobs = ex.map_array(Requeued(fn), *zip(*[(self.run, *a) for a in args]))
        except Exception as exc:  # sbatch refused: unknown partition, bad limits, ...
            raise BenchError(
                f"--executor slurm: the cluster refused the {kind} job array "
                f"({str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__}); "
                "check --partition, --time, --gpus and --mem"
            ) from None
        self._record(kind, jobs)
        errors = []
        for job in jobs:
            try:
                on_result(job.result())
            except Exception as exc:
                errors.append(f"job {job.job_id}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else exc}")
        if errors:
            raise BenchError(
                f"{len(errors)} of {len(args)} {kind} jobs failed (logs in {self.folder()}; finished ones "
                f"are kept, run the same command again to resume); first: {errors[0]}"
            )


class LocalSlurmExecutor(SlurmExecutor):
    cluster = "local"
