"""Rebuild the embedded Fashion-MNIST subset from the full set: ``python -m bench.data.make_embedded``.

The recipe: the first n images per class of a seeded permutation, kept in original order."""

from __future__ import annotations

import numpy as np

from bench.data.base import ImageDataset
from bench.data.fmnist import EMBEDDED, load_fmnist

PER_CLASS_TRAIN, PER_CLASS_TEST, SEED = 500, 100, 0


def balanced_subset(full: ImageDataset, per_class_train: int, per_class_test: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    out = {}
    for split, per_class in (("train", per_class_train), ("test", per_class_test)):
        x = getattr(full, f"{split}_x").squeeze(1).numpy()
        y = getattr(full, f"{split}_y").numpy()
        order = rng.permutation(len(y))
        keep = np.sort(np.concatenate([order[y[order] == c][:per_class] for c in range(full.num_classes)]))
        out[f"{split}_x"], out[f"{split}_y"] = x[keep], y[keep].astype(np.uint8)
    return out


if __name__ == "__main__":
    EMBEDDED.parent.mkdir(exist_ok=True)
    np.savez_compressed(EMBEDDED, **balanced_subset(load_fmnist(None), PER_CLASS_TRAIN, PER_CLASS_TEST, SEED))
    print(f"wrote {EMBEDDED} ({EMBEDDED.stat().st_size / 1e6:.2f} MB)")
