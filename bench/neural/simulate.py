"""A simulated V1 population, the offline default for neural targets.

Model neurons with Gabor receptive fields at random positions, orientations, spatial
frequencies and phases; simple cells (half-squared linear filter) and complex cells (energy of
a quadrature pair); divisive normalisation by the population's mean drive; a shared,
behaviour-coupled gain (running); Poisson or negative-binomial trial noise. Stimuli are
natural-image patches cut from scikit-image's bundled sample images (or a folder of images),
at 36 x 64 like the paper's. The noise-free responses are kept as ground truth."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import ConfigDict, Field

from bench.neural.io import default_tiers
from bench.neural.recordings import RecordingError, Recordings

SAMPLE_IMAGES = (
    "astronaut",
    "brick",
    "camera",
    "cell",
    "chelsea",
    "clock_motion",
    "coffee",
    "coins",
    "grass",
    "gravel",
    "hubble_deep_field",
    "ihc",
    "microaneurysms",
    "moon",
    "motorcycle_left",
    "motorcycle_right",
    "page",
    "retina",
    "rocket",
    "text",
)


@dataclass(frozen=True)
class SimulationParams:
    __pydantic_config__ = ConfigDict(extra="forbid")
    n_neurons: Annotated[int, Field(ge=2, le=100_000)] = 200
    n_images: Annotated[int, Field(ge=10, le=200_000)] = 1000  # shown once each
    n_oracle: Annotated[int, Field(ge=2, le=10_000)] = 50  # shown n_repeats times each
    n_repeats: Annotated[int, Field(ge=2, le=1000)] = 10
    height: Annotated[int, Field(ge=8, le=1024)] = 36
    width: Annotated[int, Field(ge=8, le=1024)] = 64
    complex_fraction: Annotated[float, Field(ge=0, le=1)] = 0.5
    noise: Literal["poisson", "negbinom"] = "poisson"
    mean_rate: Annotated[float, Field(gt=0, le=1000)] = 0.3  # mean expected count per trial (calcium-like noise)
    # share of each neuron's mean rate that does not depend on the image: sets the reliability
    # (the defaults give a median oracle signal-to-noise variance ratio below 1, as in V1)
    baseline: Annotated[float, Field(ge=0, lt=1)] = 0.65
    running_coupling: Annotated[float, Field(ge=0, le=100)] = 0.3  # gain change per unit running speed
    image_dir: str = ""  # natural images to cut patches from; default: scikit-image's samples
    seed: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0


def _load_sources(image_dir: str) -> list[np.ndarray]:
    from skimage import color, io

    if image_dir:
        paths = sorted(
            p for p in Path(image_dir).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".tif", ".tiff")
        )
        if not paths:
            raise RecordingError(f"{image_dir}: no .png/.jpg/.tif images to cut stimuli from")
    else:
        import skimage

        folder = Path(skimage.__file__).parent / "data"
        paths = [p for name in SAMPLE_IMAGES for p in folder.glob(f"{name}.*")]
    out = []
    for p in paths:
        img = io.imread(p)
        if img.ndim == 3:
            img = color.rgb2gray(img[..., :3])
        img = img.astype(np.float64)
        out.append(img / 255.0 if img.max() > 1 else img)
    return out


def natural_patches(n: int, h: int, w: int, rng: np.random.Generator, image_dir: str = "") -> np.ndarray:
    """n grayscale patches (n x 1 x h x w in [0,1]): random crops at 1-3x the target size,
    area-downsampled, randomly mirrored."""
    sources = [s for s in _load_sources(image_dir) if s.shape[0] >= h and s.shape[1] >= w]
    patches = np.empty((n, 1, h, w), np.float32)
    for k in range(n):
        src = sources[rng.integers(len(sources))]
        scale = int(rng.integers(1, 1 + min(3, src.shape[0] // h, src.shape[1] // w)))
        y = rng.integers(0, src.shape[0] - h * scale + 1)
        x = rng.integers(0, src.shape[1] - w * scale + 1)
        crop = src[y : y + h * scale, x : x + w * scale].reshape(h, scale, w, scale).mean(axis=(1, 3))
        patches[k, 0] = crop[:, ::-1] if rng.random() < 0.5 else crop
    return patches


def gabor_bank(p: SimulationParams, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit-norm, zero-mean Gabor pairs (even, odd) per neuron, and which neurons are complex."""
    yy, xx = np.mgrid[0 : p.height, 0 : p.width].astype(np.float64)
    k = p.n_neurons
    cx, cy = rng.uniform(0.25, 0.75, k) * p.width, rng.uniform(0.25, 0.75, k) * p.height
    theta, phase = rng.uniform(0, np.pi, k), rng.uniform(0, 2 * np.pi, k)
    freq = np.exp(rng.uniform(np.log(0.05), np.log(0.2), k))  # cycles per pixel
    sigma = np.clip(0.45 / freq, 1.5, 8.0)
    aspect = rng.uniform(0.5, 1.0, k)
    banks = []
    for shift in (0.0, np.pi / 2):
        filters = np.empty((k, p.height, p.width))
        for a in range(k):
            dx, dy = xx - cx[a], yy - cy[a]
            u = dx * np.cos(theta[a]) + dy * np.sin(theta[a])
            v = -dx * np.sin(theta[a]) + dy * np.cos(theta[a])
            g = np.exp(-(u**2 + (aspect[a] * v) ** 2) / (2 * sigma[a] ** 2)) * np.cos(
                2 * np.pi * freq[a] * u + phase[a] + shift
            )
            g -= g.mean()
            filters[a] = g / np.linalg.norm(g)
        banks.append(filters.reshape(k, -1))
    return banks[0], banks[1], rng.random(k) < p.complex_fraction


def population_rates(
    images: np.ndarray, even: np.ndarray, odd: np.ndarray, complex_cells: np.ndarray, gains: np.ndarray
) -> np.ndarray:
    """Noise-free rates (images x neurons): drive, then divisive normalisation."""
    s = images.reshape(len(images), -1).astype(np.float64)
    s = s - s.mean(axis=1, keepdims=True)  # contrast around each image's mean luminance
    c_even, c_odd = s @ even.T, s @ odd.T
    drive = np.where(complex_cells, c_even**2 + c_odd**2, np.maximum(c_even, 0) ** 2)
    pool = drive.mean(axis=1, keepdims=True)
    return gains * drive / (np.median(pool) + pool)


def simulate(p: SimulationParams) -> Recordings:
    rng = np.random.default_rng(p.seed)
    n = p.n_images + p.n_oracle
    images = natural_patches(n, p.height, p.width, rng, p.image_dir)
    even, odd, complex_cells = gabor_bank(p, rng)
    unit = population_rates(images, even, odd, complex_cells, np.ones(p.n_neurons))
    unit = unit / np.maximum(unit.mean(axis=0), 1e-12)  # mean 1 per neuron
    # heterogeneous mean rates, log-normal around mean_rate
    rates = p.mean_rate * np.exp(rng.normal(0, 0.5, p.n_neurons)) * (p.baseline + (1 - p.baseline) * unit)

    trial_image = np.concatenate([np.arange(p.n_images), np.repeat(np.arange(p.n_images, n), p.n_repeats)])
    trial_image = trial_image[rng.permutation(len(trial_image))]
    t = len(trial_image)
    running = np.where(rng.random(t) < 0.4, rng.uniform(0.5, 1.5, t), 0.0)
    pupil = np.clip(rng.normal(1.0, 0.15, t) + 0.2 * running, 0.2, None)
    behavior = np.stack([pupil, np.r_[0.0, np.diff(pupil)], running], axis=1).astype(np.float32)
    pupil_center = rng.normal(0.0, 1.0, (t, 2)).astype(np.float32)
    coupling = rng.normal(p.running_coupling, p.running_coupling / 3, p.n_neurons)
    expected = rates[trial_image] * np.exp(np.outer(running - running.mean(), coupling))
    if p.noise == "poisson":
        responses = rng.poisson(expected)
    else:  # negative binomial with dispersion 2: variance = mean + mean^2 / 2
        responses = rng.poisson(rng.gamma(2.0, expected / 2.0))
    responses = responses.astype(np.float32)
    oracle = np.zeros(n, bool)
    oracle[p.n_images :] = True
    # a neuron that never fired cannot be weighted: give it one spike on a random trial
    silent = responses.std(axis=0) == 0
    responses[rng.integers(0, t, silent.sum()), np.where(silent)[0]] += 1
    return Recordings(
        images=images,
        trial_image=trial_image,
        responses=responses,
        oracle=oracle,
        tiers=default_tiers(trial_image, oracle, p.seed),
        behavior=behavior,
        pupil_center=pupil_center,
        ground_truth=rates.astype(np.float32),
        source=f"simulated(seed={p.seed})",
    ).validate()
