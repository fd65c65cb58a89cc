"""neuroreg-bench: robustness benchmarks for image classifiers regularized with brain data."""

from bench.numerics import activate_portable_at_import

activate_portable_at_import()  # before torch and numpy load (a no-op unless BENCH_PORTABLE is set)

from bench.train.checkpoint import load_model  # noqa: E402

__version__ = "0.1.0"
__all__ = ["evaluate", "load_model", "__version__"]


def __getattr__(name: str):
    """``bench.evaluate`` imports the runner and the attack libraries: only when first used."""
    if name == "evaluate":
        from bench.api import evaluate

        return evaluate
    raise AttributeError(f"module 'bench' has no attribute {name!r}")
