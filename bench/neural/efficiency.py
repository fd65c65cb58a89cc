"""How much recording a neural target needs: the similarity of model-denoised and single-trial
targets to the noise-free truth as the number of recorded images grows, on one simulated
population (the largest recording, cut down, so that every size sees the same neurons and the
same oracle images)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from bench.neural.predictive import FittedModel, ModelParams, fit
from bench.neural.recordings import Recordings
from bench.neural.simulate import SimulationParams, simulate
from bench.neural.target import corr, pairs_from_views, scan_views


def first_images(rec: Recordings, n: int) -> Recordings:
    """The recording as if only its first ``n`` single-shown images had been recorded (every
    oracle image and its repeats kept; the tiers of the kept trials unchanged)."""
    stimuli = np.where(~rec.oracle)[0]
    keep_images = np.sort(np.concatenate([stimuli[:n], np.where(rec.oracle)[0]]))
    new_index = np.full(len(rec.images), -1)
    new_index[keep_images] = np.arange(len(keep_images))
    trials = np.where(new_index[rec.trial_image] >= 0)[0]

    def rows(a):
        return None if a is None else a[trials]

    return dataclasses.replace(
        rec,
        images=rec.images[keep_images],
        trial_image=new_index[rec.trial_image[trials]],
        responses=rec.responses[trials],
        oracle=rec.oracle[keep_images],
        tiers=rec.tiers[trials],
        behavior=rows(rec.behavior),
        pupil_center=rows(rec.pupil_center),
        ground_truth=None if rec.ground_truth is None else rec.ground_truth[keep_images],
    )


def efficiency_rows(
    sim: SimulationParams,
    sizes: Sequence[int],
    model: ModelParams,
    seeds: Sequence[int],
    log: Callable[[str], None] = lambda m: None,
) -> list[dict]:
    """Per size: on the oracle images, single trial vs truth, each model seed vs truth and the
    seed ensemble vs truth; on the stimuli (the target itself), the raw (single-trial) target and
    the ensemble's target vs truth; and the models' held-out prediction quality."""
    full = simulate(dataclasses.replace(sim, n_images=max(sizes)))
    rows = []
    for n in sorted(sizes):
        rec = first_images(full, n)
        models: list[FittedModel] = []
        for seed in seeds:
            models.append(fit(rec, model, seed))
            log(
                f"{n} images, model seed {seed}: {models[-1].epochs} epochs, test r {models[-1].test_correlation.mean():.3f}"
            )
        per_seed = [scan_views(rec, "neural", [m]).validation["model_vs_ground_truth"] for m in models]
        ensemble = scan_views(rec, "neural", models)
        raw = scan_views(rec, "raw")
        target = pairs_from_views(ensemble.views)
        rows.append(
            {
                "images": n,
                "model_seeds": len(models),
                "oracle_single_trial_r": raw.validation["single_trial_vs_ground_truth"],
                "oracle_model_r_mean": float(np.mean(per_seed)),
                "oracle_model_r_sd": float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else float("nan"),
                "oracle_ensemble_r": ensemble.validation["model_vs_ground_truth"],
                "stimuli_raw_target_r": corr(pairs_from_views(raw.views), raw.truth_pairs),
                "stimuli_ensemble_target_r": corr(target, ensemble.truth_pairs),
                "test_correlation": float(np.mean([m.test_correlation.mean() for m in models])),
                "epochs": float(np.mean([m.epochs for m in models])),
            }
        )
    return rows
