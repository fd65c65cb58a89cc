"""Evaluations: one class each, registered by name (the table below); suite cards list them with
their parameters. Modules load when a card names them (attack libraries are heavy)."""

from bench.evals.base import EVALUATIONS, EvalContext, EvalOutput, Evaluation, Example, Metric
from bench.evals.reporting import MetricId

EVALUATIONS.lazy("clean", "bench.evals.clean:Clean")
EVALUATIONS.lazy("noise", "bench.evals.noise:Noise")
EVALUATIONS.lazy("pgd", "bench.evals.pgd:PGD")
EVALUATIONS.lazy("minimal", "bench.evals.minimal:Minimal")
EVALUATIONS.lazy("transfer", "bench.evals.transfer:Transfer")
EVALUATIONS.lazy("autoattack", "bench.evals.autoattack:AutoAttackEval")
EVALUATIONS.lazy("corruptions", "bench.evals.corruptions:Corruptions")
EVALUATIONS.lazy("similarity", "bench.evals.similarity:Similarity")

__all__ = ["EVALUATIONS", "EvalContext", "EvalOutput", "Evaluation", "Example", "Metric", "MetricId"]
