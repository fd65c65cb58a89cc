"""Evaluations: one class each, registered by name; suite cards list them with their parameters."""
from bench.evals.base import EVALUATIONS, EvalContext, EvalOutput, Evaluation, Metric, sub_seed
from bench.evals import adversarial, autoattack, cifar_c, clean, minimal, noise, transfer  # noqa: F401  (register)

__all__ = ["EVALUATIONS", "EvalContext", "EvalOutput", "Evaluation", "Metric", "sub_seed"]
