"""The similarity target of a zoo card's model: what its training regularizes towards, and what
the similarity evaluation compares it with (one definition for both)."""

from __future__ import annotations

from pathlib import Path

from bench.cards import ModelCard
from bench.data import load_dataset, train_val_split
from bench.targets import SimilarityTarget, build_target


def card_target(card: ModelCard, seed: int, data_root: Path | None = None) -> SimilarityTarget | None:
    """The target a card's model of one training seed trains on (None for the baseline): never
    with the card's validation images among its stimuli, and a shuffle control's permutation of
    its own per training seed."""
    if not card.has_target:
        return None
    tr = card.trainer
    n = len(load_dataset(card.dataset, data_root).train_y)
    _, val_idx = train_val_split(n, tr.val_fraction, tr.split_seed)
    return build_target(card.regularizer.target, data_root, training_seed=seed, exclude={card.dataset: val_idx})
