"""Worker processes on this machine (the standard library's process pool, spawned fresh): for
a machine with cores to spare. Each worker runs one torch thread unless told otherwise."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed

from bench.errors import BenchError
from bench.executors import Executor


class LocalExecutor(Executor):
    """One pool for the whole run: workers started (and torch imported) once serve the trainings
    and then the cells; close() ends them."""

    _pool: ProcessPoolExecutor | None = None

    def check(self) -> None:
        pass

    def _workers(self) -> ProcessPoolExecutor:
        if self._pool is None:
            context = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(
                max_workers=self.options.workers, mp_context=context, initializer=_exit_with, initargs=(os.getpid(),)
            )
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def _map(self, kind: str, fn, args: list[tuple], on_result) -> None:
        errors = []
        pool = self._workers()
        futures = [pool.submit(fn, self.run, *a) for a in args]
        try:
            for future in as_completed(futures):
                try:
                    on_result(future.result())
                except BenchError as exc:
                    errors.append(str(exc))
                except Exception as exc:  # a worker that died or failed: the others finish first
                    errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            if errors or any(not f.done() for f in futures):  # a broken or interrupted pool is not reused
                self.close()
        if errors:
            raise BenchError(
                f"{len(errors)} of {len(args)} {kind} jobs failed (finished ones are kept; run the same "
                f"command again to resume); first: {errors[0]}"
            )


def _exit_with(parent: int) -> None:
    """A worker whose driver was killed (SIGKILL, a CI's end) stops within a second instead of
    finishing its job for nobody: what it finished is on disk (checkpoints per epoch, cell files),
    and the next run resumes from there."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="exit-with-driver").start()
