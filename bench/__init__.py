"""neuroreg-bench: robustness benchmarks for image classifiers regularized with brain data."""

from bench.numerics import activate_portable_at_import

activate_portable_at_import()  # before torch and numpy load (a no-op unless BENCH_PORTABLE is set)

from bench.train.checkpoint import load_model  # noqa: E402

__version__ = "0.1.0"
__all__ = ["load_model", "__version__"]
