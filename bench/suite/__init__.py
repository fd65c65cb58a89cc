"""Running a suite: train what is missing, evaluate what is missing, store every cell."""

from bench.suite.runner import RunSummary, run_suite

__all__ = ["RunSummary", "run_suite"]
