"""Worker processes on this machine (the standard library's process pool, spawned fresh): for
a machine with cores to spare. Each worker runs one torch thread unless told otherwise."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed

from bench.errors import BenchError
from bench.executors import Executor


class LocalExecutor(Executor):
    def check(self) -> None:
        pass

    def _map(self, kind: str, fn, args: list[tuple], on_result) -> None:
        errors = []
        with ProcessPoolExecutor(
            max_workers=self.options.workers, mp_context=multiprocessing.get_context("spawn")
        ) as pool:
            futures = [pool.submit(fn, self.run, *a) for a in args]
            for future in as_completed(futures):
                try:
                    on_result(future.result())
                except BenchError as exc:
                    errors.append(str(exc))
                except Exception as exc:  # a worker that died or failed: the others finish first
                    errors.append(f"{type(exc).__name__}: {exc}")
        if errors:
            raise BenchError(
                f"{len(errors)} of {len(args)} {kind} jobs failed (finished ones are kept; run the same "
                f"command again to resume); first: {errors[0]}"
            )
