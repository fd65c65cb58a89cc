"""One in-memory form for recordings of one scan, validated, with the oracle statistics the
neuron weighting needs. Pure: readers and writers live in bench.neural.io."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.errors import BenchError

BEHAVIOR = ("pupil_size", "pupil_size_change", "running_speed")  # Sensorium's data/behavior columns


class RecordingError(BenchError):
    """Recordings that cannot be used; the message names the file and the problem."""


@dataclass
class Recordings:
    images: np.ndarray  # N x 1 x H x W float32 in [0,1]
    trial_image: np.ndarray  # T, index into images
    responses: np.ndarray  # T x K float32, one row per trial
    oracle: np.ndarray  # N bool: images shown repeatedly (for the neuron weighting)
    tiers: np.ndarray  # T str: train / validation / test
    behavior: np.ndarray | None = None  # T x 3 (BEHAVIOR), optional
    pupil_center: np.ndarray | None = None  # T x 2, optional
    ground_truth: np.ndarray | None = None  # N x K noise-free rates (simulations only)
    source: str = ""

    @property
    def n_neurons(self) -> int:
        return self.responses.shape[1]

    def validate(self, where: str | None = None) -> Recordings:
        where = where or self.source or "recordings"
        n, t = len(self.images), len(self.trial_image)

        def fail(problem: str):
            raise RecordingError(f"{where}: {problem}")

        if self.images.ndim != 4 or self.images.shape[1] != 1:
            fail(f"images must be N x 1 x H x W, got shape {self.images.shape}")
        if self.responses.ndim != 2 or len(self.responses) != t:
            fail(f"responses must be trials x neurons with {t} trials, got shape {self.responses.shape}")
        for name in ("behavior", "pupil_center"):
            arr = getattr(self, name)
            if arr is not None and len(arr) != t:
                fail(f"{name} has {len(arr)} rows for {t} trials")
        if len(self.tiers) != t or len(self.oracle) != n:
            fail(f"tiers need one entry per trial ({t}) and the oracle mask one per image ({n})")
        for name in ("images", "responses", "behavior", "pupil_center"):
            arr = getattr(self, name)
            if arr is not None and not np.isfinite(arr).all():
                fail(f"{name} contain NaN or inf values (first at {np.argwhere(~np.isfinite(arr))[0].tolist()})")
        if self.images.min() < 0 or self.images.max() > 1:
            fail("images must lie in [0, 1]")
        if self.trial_image.min() < 0 or self.trial_image.max() >= n:
            fail(f"trial image indices must lie in 0..{n - 1}")
        shown = np.bincount(self.trial_image, minlength=n)
        if (shown == 0).any():
            fail(f"{int((shown == 0).sum())} images have no trials (first: image {int(np.argmax(shown == 0))})")
        negative = np.where(self.responses.min(axis=0) < 0)[0]
        if len(negative):
            fail(f"{len(negative)} neurons have negative responses (first: neuron {negative[0]}); shift or clip them")
        constant = np.where(self.responses.std(axis=0) == 0)[0]
        if len(constant):
            fail(f"{len(constant)} neurons have constant responses (first: neuron {constant[0]}); drop them")
        if (shown[self.oracle] < 2).any():
            fail("oracle images must be shown at least twice")
        return self


def oracle_variances(rec: Recordings) -> tuple[np.ndarray, np.ndarray]:
    """Per neuron, from the oracle repeats (method.md §2): signal variance
    sigma^2 = Var_i(E_t r_it) and noise variance eta^2 = E_i(Var_t r_it) (ddof = 1 both)."""
    oracle_images = np.where(rec.oracle)[0]
    if len(oracle_images) < 2:
        raise RecordingError(f"{rec.source}: need at least two oracle images for the neuron weights")
    means, variances = [], []
    for i in oracle_images:
        r = rec.responses[rec.trial_image == i]
        means.append(r.mean(axis=0))
        variances.append(r.var(axis=0, ddof=1))
    return np.var(np.stack(means), axis=0, ddof=1), np.mean(np.stack(variances), axis=0)


def neuron_weights(signal_var: np.ndarray, noise_var: np.ndarray, quality: np.ndarray | None = None) -> np.ndarray:
    """w_a = sigma_a / eta_a, times the prediction quality v_a where a model exists. Negative
    correlations get weight 0: a neuron the model predicts worse than chance carries no signal."""
    w = np.sqrt(signal_var) / np.sqrt(np.maximum(noise_var, 1e-12))
    return w if quality is None else w * np.clip(quality, 0, None)


def first_trials(rec: Recordings, images: np.ndarray) -> np.ndarray:
    """The first trial's response for each given image: the single-trial ('raw') view."""
    first = {}
    for t, i in enumerate(rec.trial_image):
        first.setdefault(int(i), t)
    return rec.responses[[first[int(i)] for i in images]]
