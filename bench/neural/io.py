"""Readers and writers of recordings.

Sensorium / neuralpredictors file tree (one folder per scan; per-trial .npy files):
    data/images/{t}.npy         1 x H x W, 0-255
    data/responses/{t}.npy      K
    data/behavior/{t}.npy       3 (pupil size, its change, running speed)   optional
    data/pupil_center/{t}.npy   2                                           optional
    meta/trials/tiers.npy       T strings: train / validation / test
    meta/trials/frame_image_id.npy  T image identities (repeats share one)
    meta/neurons/unit_ids.npy   K
    ground_truth/rates.npy      N x K noise-free rates (written by the simulator only)

Plain file (.npz, or .h5/.hdf5 with the same dataset names):
    images (N x H x W or N x 1 x H x W; [0,1] or 0-255), trial_image (T), responses (T x K);
    optional: oracle (N bool; default: images with more than one trial), tiers (T; default:
    oracle trials 'test', the rest 90/10 train/validation), behavior (T x 3), pupil_center
    (T x 2), ground_truth (N x K)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.neural.recordings import RecordingError, Recordings

OPTIONAL = ("behavior", "pupil_center")


def _images01(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 3:
        images = images[:, None]
    return images / 255.0 if images.max() > 1.0 else images


def default_tiers(trial_image: np.ndarray, oracle: np.ndarray, seed: int = 0) -> np.ndarray:
    tiers = np.where(oracle[trial_image], "test", "train").astype(object)
    train = np.where(tiers == "train")[0]
    val = np.random.default_rng(seed).permutation(train)[: max(1, len(train) // 10)]
    tiers[val] = "validation"
    return tiers.astype(str)


def read_sensorium(folder: str | Path) -> Recordings:
    folder = Path(folder)
    meta = folder / "meta" / "trials"
    for needed in (
        folder / "data" / "images",
        folder / "data" / "responses",
        meta / "tiers.npy",
        meta / "frame_image_id.npy",
    ):
        if not needed.exists():
            raise RecordingError(f"{needed}: missing; is {folder} a Sensorium-layout scan folder?")
    tiers = np.load(meta / "tiers.npy", allow_pickle=False).astype(str)
    frame_ids = np.load(meta / "frame_image_id.npy", allow_pickle=False)
    t = len(tiers)

    def per_trial(name: str) -> np.ndarray:
        files = sorted((folder / "data" / name).glob("*.npy"), key=lambda p: int(p.stem) if p.stem.isdigit() else -1)
        if len(files) != t or any(not p.stem.isdigit() for p in files):
            raise RecordingError(
                f"{folder / 'data' / name}: expected {t} files 0.npy..{t - 1}.npy (one per trial), found {len(files)}"
            )
        try:
            return np.stack([np.load(p, allow_pickle=False) for p in files])
        except ValueError as exc:
            raise RecordingError(f"{folder / 'data' / name}: files of different shapes or unreadable ({exc})") from None

    unique, trial_image = np.unique(frame_ids, return_inverse=True)
    trial_images = per_trial("images")
    first = np.array([np.argmax(trial_image == i) for i in range(len(unique))])
    extra = {name: per_trial(name).astype(np.float32) for name in OPTIONAL if (folder / "data" / name).is_dir()}
    gt = folder / "ground_truth" / "rates.npy"
    rec = Recordings(
        images=_images01(trial_images[first]),
        trial_image=trial_image.astype(np.int64),
        responses=per_trial("responses").astype(np.float32),
        oracle=np.bincount(trial_image, minlength=len(unique)) > 1,
        tiers=tiers,
        ground_truth=np.load(gt) if gt.is_file() else None,
        source=str(folder),
        **extra,
    )
    return rec.validate()


def write_sensorium(rec: Recordings, folder: str | Path) -> Path:
    folder = Path(folder)
    for sub in ("images", "responses", *[n for n in OPTIONAL if getattr(rec, n) is not None]):
        (folder / "data" / sub).mkdir(parents=True, exist_ok=True)
    (folder / "meta" / "trials").mkdir(parents=True, exist_ok=True)
    (folder / "meta" / "neurons").mkdir(parents=True, exist_ok=True)
    for t, i in enumerate(rec.trial_image):
        np.save(folder / "data" / "images" / f"{t}.npy", np.round(rec.images[i] * 255).astype(np.float32))
        np.save(folder / "data" / "responses" / f"{t}.npy", rec.responses[t])
        for name in OPTIONAL:
            if getattr(rec, name) is not None:
                np.save(folder / "data" / name / f"{t}.npy", getattr(rec, name)[t])
    np.save(folder / "meta" / "trials" / "tiers.npy", rec.tiers.astype("U10"))
    np.save(folder / "meta" / "trials" / "frame_image_id.npy", rec.trial_image.astype(np.int64))
    np.save(folder / "meta" / "neurons" / "unit_ids.npy", np.arange(rec.n_neurons))
    if rec.ground_truth is not None:
        (folder / "ground_truth").mkdir(exist_ok=True)
        np.save(folder / "ground_truth" / "rates.npy", rec.ground_truth.astype(np.float32))
    return folder


def read_plain(path: str | Path) -> Recordings:
    path = Path(path)
    if not path.is_file():
        raise RecordingError(f"{path}: no such file")
    if path.suffix in (".h5", ".hdf5"):
        import h5py

        with h5py.File(path, "r") as fh:
            data = {k: np.asarray(fh[k]) for k in fh.keys()}
    else:
        try:
            with np.load(path, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
        except (ValueError, OSError) as exc:
            raise RecordingError(f"{path}: not a readable .npz file ({exc})") from None
    for key in ("images", "trial_image", "responses"):
        if key not in data:
            raise RecordingError(
                f"{path}: missing key '{key}' (documented keys: images, trial_image, responses, "
                "oracle, tiers, behavior, pupil_center, ground_truth)"
            )
    trial_image = data["trial_image"].astype(np.int64)
    n = len(data["images"])
    oracle = data["oracle"].astype(bool) if "oracle" in data else np.bincount(trial_image, minlength=n) > 1
    tiers = data["tiers"].astype(str) if "tiers" in data else default_tiers(trial_image, oracle)
    rec = Recordings(
        images=_images01(data["images"]),
        trial_image=trial_image,
        responses=data["responses"].astype(np.float32),
        oracle=oracle,
        tiers=tiers,
        behavior=data.get("behavior"),
        pupil_center=data.get("pupil_center"),
        ground_truth=data.get("ground_truth"),
        source=str(path),
    )
    return rec.validate()


def read_recordings(path: str | Path) -> Recordings:
    """A Sensorium-layout folder or a plain .npz / .h5 file."""
    path = Path(path)
    if path.is_dir():
        return read_sensorium(path)
    if path.suffix in (".npz", ".h5", ".hdf5"):
        return read_plain(path)
    raise RecordingError(f"{path}: neither a Sensorium-layout folder nor a .npz/.h5 file")
