"""Neural and raw similarity targets: weighted, centred cosine similarity of model predictions
(or of single trials), averaged over scans and model seeds, stored as a versioned artifact.

Only the N(N-1)/2 pairs i < j are kept (a float32 vector indexed by pair rank: 50 MB for 5,000
images); they are computed in row blocks, so no N x N matrix and no concatenation of all scans'
responses is ever held in memory."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from bench.errors import BenchError
from bench.io import atomic_save, load_versioned
from bench.neural.recordings import Recordings, first_trials, neuron_weights, oracle_variances
from bench.targets.base import SimilarityTarget, n_pairs, pair_rank, unit_rows

TARGET_FORMAT = "neuroreg-bench/target"
TARGET_VERSION = 1


def recording_hash(rec: Recordings) -> str:
    h = hashlib.sha256()
    for arr in (rec.images, rec.trial_image, rec.responses):
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()[:16]


def unit_vectors(responses: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weight each neuron, centre each neuron over images, L2-normalise each image."""
    return unit_rows(torch.from_numpy(np.asarray(responses * weights, dtype=np.float64))).numpy()


def pairs_from_views(views: list[np.ndarray], block: int = 512) -> np.ndarray:
    """Upper-triangle pairs (i < j, row-major) of the mean over views of V V^T."""
    n = views[0].shape[0]
    out = np.empty(n_pairs(n), np.float32)
    pos = 0
    for start in range(0, n, block):
        stop = min(start + block, n)
        s = sum(v[start:stop] @ v.T for v in views) / len(views)
        for r in range(stop - start):
            row = s[r, start + r + 1 :]
            out[pos : pos + len(row)] = row
            pos += len(row)
    return out


def pair_similarities(responses: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The i < j similarities of a small set of images (validation on oracle images)."""
    v = unit_vectors(responses, weights)
    return (v @ v.T)[np.triu_indices(len(v), 1)]


def corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1])


@dataclass
class ScanResult:
    """What one scan contributes: unit vectors per view (model seed) for the stimuli, and the
    oracle-image similarities of the validation report."""

    views: list[np.ndarray]
    validation: dict
    info: dict = field(default_factory=dict)
    truth_pairs: np.ndarray | None = None  # the stimuli's noise-free similarities (simulations)


def scan_views(rec: Recordings, kind: str, models: list | None = None) -> ScanResult:
    """kind 'neural': model predictions weighted by w_a * v_a (one view per model seed);
    'raw': single-trial responses weighted by w_a (method.md §5 control)."""
    stimuli = np.where(~rec.oracle)[0]
    oracle = np.where(rec.oracle)[0]
    signal, noise = oracle_variances(rec)
    # oracle validation: repeat-averaged similarity from all trials but the first, against the
    # first trial alone (a) and the model's prediction (b): the two never share a trial
    held = np.stack([rec.responses[np.where(rec.trial_image == i)[0][1:]].mean(0) for i in oracle])
    single = first_trials(rec, oracle)
    views, val = [], {"oracle_images": int(len(oracle)), "pairs": int(n_pairs(len(oracle)))}
    if kind == "neural":
        if not models:
            raise BenchError("a neural target needs fitted predictive models")
        for fm in models:
            w = neuron_weights(signal, noise, fm.test_correlation)
            views.append(unit_vectors(fm.predict(rec.images[stimuli]), w))
        w = neuron_weights(signal, noise, np.mean([fm.test_correlation for fm in models], axis=0))
        pred = np.mean([fm.predict(rec.images[oracle]) for fm in models], axis=0)
    else:
        w = neuron_weights(signal, noise)
        views.append(unit_vectors(first_trials(rec, stimuli), w))
        pred = None
    s_avg, s_single = pair_similarities(held, w), pair_similarities(single, w)
    val["single_trial_vs_repeat_average"] = corr(s_single, s_avg)
    if pred is not None:
        val["model_vs_repeat_average"] = corr(pair_similarities(pred, w), s_avg)
    if rec.ground_truth is not None:
        s_true = pair_similarities(rec.ground_truth[oracle], w)
        val["single_trial_vs_ground_truth"] = corr(s_single, s_true)
        val["repeat_average_vs_ground_truth"] = corr(s_avg, s_true)
        if pred is not None:
            val["model_vs_ground_truth"] = corr(pair_similarities(pred, w), s_true)
    info = {
        "source": rec.source,
        "hash": recording_hash(rec),
        "neurons": rec.n_neurons,
        "stimuli": int(len(stimuli)),
        "median_w": float(np.median(w)),
    }
    if models:
        info["model_seeds"] = [fm.seed for fm in models]
        info["test_correlation"] = float(np.mean([fm.test_correlation.mean() for fm in models]))
    truth = pair_similarities(rec.ground_truth[stimuli], w) if rec.ground_truth is not None else None
    return ScanResult(views, val, info, truth)


def build_artifact(
    scans: list[Recordings], kind: str, models: dict[int, list] | None, path: Path, recipe: dict
) -> dict:
    """Average the scans' views into one pair vector; write images, pairs and metadata."""
    first = scans[0]
    stimuli = np.where(~first.oracle)[0]
    for rec in scans[1:]:
        if not np.array_equal(rec.images[~rec.oracle], first.images[stimuli]):
            raise BenchError(
                f"{rec.source}: its stimulus images differ from {first.source}'s; scans can only be "
                "averaged over the same images"
            )
    results = [scan_views(rec, kind, (models or {}).get(k)) for k, rec in enumerate(scans)]
    pairs = pairs_from_views([v for r in results for v in r.views])
    for r in results:  # the artifact's own pairs against each simulated scan's truth
        if r.truth_pairs is not None:
            r.validation["target_vs_ground_truth"] = corr(pairs, r.truth_pairs)
    meta = {
        "kind": kind,
        "recipe": recipe,
        "scans": [r.info for r in results],
        "validation": [r.validation for r in results],
        "n_stimuli": int(len(stimuli)),
        "n_pairs": int(len(pairs)),
    }
    images = torch.from_numpy(np.round(first.images[stimuli] * 255).astype(np.uint8))
    atomic_save(
        {
            "format": TARGET_FORMAT,
            "format_version": TARGET_VERSION,
            "images": images,
            "pairs": torch.from_numpy(pairs),
            "meta": json.dumps(meta, sort_keys=True),
        },
        Path(path),
    )
    return meta


class PairTarget(SimilarityTarget):
    """A stored target: stimulus images and the pair vector (S[i, i] = 1)."""

    def __init__(self, images: torch.Tensor, pairs: torch.Tensor, description: dict):
        if len(pairs) != n_pairs(len(images)):
            raise ValueError(f"{len(pairs)} pairs for {len(images)} images")
        self.images, self.pairs, self.description = images, pairs, description

    def lookup(self, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        lo, hi = torch.minimum(i, j), torch.maximum(i, j)
        same = lo == hi
        s = self.pairs[pair_rank(lo, torch.where(same, lo + 1, hi), self.n).clamp_max(len(self.pairs) - 1)]
        return torch.where(same, torch.ones_like(s), s)


def load_artifact(path: str | Path) -> tuple[PairTarget, dict]:
    path = Path(path)
    obj = load_versioned(
        path,
        TARGET_FORMAT,
        TARGET_VERSION,
        "target artifact",
        "build one with 'bench neural target', or delete a cached one to rebuild it",
        BenchError,
    )
    meta = json.loads(obj["meta"])
    images = obj["images"].float() / 255.0
    desc = {
        "kind": meta["kind"],
        "artifact": str(path),
        "n_stimuli": meta["n_stimuli"],
        "scans": [s["hash"] for s in meta["scans"]],
    }
    return PairTarget(images, obj["pairs"], desc), meta


def validation_text(meta: dict) -> str:
    """A target's validation report: similarity correlations on the oracle images, per scan."""
    from tabulate import tabulate

    rows = [
        [k.replace("_", " "), *[f"{v.get(k, float('nan')):.3f}" for v in meta["validation"]]]
        for k in dict.fromkeys(k for v in meta["validation"] for k in v if k not in ("oracle_images", "pairs"))
    ]
    table = tabulate(
        rows,
        headers=["correlation of pairwise similarities", *[f"scan {i}" for i in range(len(meta["validation"]))]],
    )
    return table + "\n(oracle images; the repeat average uses all trials but the first, the single trial is the first)"
