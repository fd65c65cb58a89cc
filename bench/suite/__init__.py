"""Running a suite: train what is missing, evaluate what is missing, store every cell."""

from bench.suite.runner import RunSummary, plan_cells, run_suite

__all__ = ["RunSummary", "plan_cells", "run_suite"]
