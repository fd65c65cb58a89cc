"""Similarity targets: stimulus images and a pairwise similarity S[i, j] to pull the network towards."""

from bench.targets import pixel  # noqa: F401  (registers pixel targets)
from bench.targets.base import CosineTarget, SimilarityTarget, pair_rank, pair_unrank
from bench.targets.build import SHUFFLES, TARGETS, TargetSpec, build_target, validate_target_spec

__all__ = [
    "CosineTarget",
    "SHUFFLES",
    "SimilarityTarget",
    "TARGETS",
    "TargetSpec",
    "build_target",
    "pair_rank",
    "pair_unrank",
    "validate_target_spec",
]
