"""neuroreg-bench: robustness benchmarks for image classifiers regularized with brain data."""
from bench.train.checkpoint import load_model

__version__ = "0.1.0"
__all__ = ["load_model", "__version__"]
