"""A Ray cluster: an existing one (``address``) or a local one started for the run. Tasks ask for
CPUs (and GPUs per training job); a task whose worker dies is run again (``retries``), and a
training resumes from its last epoch. Workers must see the workdir (a shared file system)."""

from __future__ import annotations

import os
import socket
import tempfile

from bench.errors import BenchError
from bench.executors import Executor, missing_extra


def _ray():
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    try:
        import ray
    except ImportError:
        raise missing_extra("ray", "ray") from None
    return ray


def reachable(address: str, timeout: float = 5.0) -> None:
    """Ray waits minutes for a cluster that is not there; a socket says at once."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout).close()
    except (OSError, ValueError) as exc:
        raise BenchError(
            f"--address {address}: no Ray cluster answers there ({getattr(exc, 'strerror', None) or exc}); "
            "start one (ray start --head) or omit --address for a local one"
        ) from None


class RayExecutor(Executor):
    def check(self) -> None:
        ray = _ray()
        if ray.is_initialized():
            return
        address = self.options.address or None
        if address and address != "auto":
            reachable(address)
        try:
            if address:
                ray.init(address=address, logging_level="ERROR", log_to_driver=False)
            else:
                ray.init(
                    num_cpus=self.options.workers * max(self.run.threads, 1),
                    include_dashboard=False,
                    logging_level="ERROR",
                    log_to_driver=False,
                    _temp_dir=os.environ.get("BENCH_RAY_TMP", os.path.join(tempfile.gettempdir(), "bench-ray")),
                    runtime_env={"env_vars": {"OMP_NUM_THREADS": str(self.run.threads)}},
                )
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise BenchError(
                f"--address {address}: no Ray cluster answers there ({str(exc).splitlines()[0]}); start "
                "one (ray start --head) or omit --address for a local one"
            ) from None

    def _map(self, kind: str, fn, args: list[tuple], on_result) -> None:
        ray = _ray()
        gpus = self.options.gpus if kind == "train" else 0
        task = ray.remote(num_cpus=max(self.run.threads, 1), num_gpus=gpus, max_retries=self.options.retries)(fn)
        run = ray.put(self.run)
        pending = {task.remote(run, *a): a for a in args}
        errors = []
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            ref = done[0]
            pending.pop(ref)
            try:
                on_result(ray.get(ref))
            except Exception as exc:  # RayTaskError wraps the worker's exception
                cause = getattr(exc, "cause", None) or exc
                errors.append(str(cause) if isinstance(cause, BenchError) else f"{type(cause).__name__}: {cause}")
        if errors:
            raise BenchError(
                f"{len(errors)} of {len(args)} {kind} jobs failed on Ray (finished ones are kept; run the "
                f"same command again to resume); first: {errors[0]}"
            )

    def close(self) -> None:
        ray = _ray()
        if ray.is_initialized() and not self.options.address:
            ray.shutdown()
