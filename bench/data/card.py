"""Your own dataset as a card (``datasets/NAME.toml``), no code: an ``.npz`` with ``x_train,
y_train, x_test, y_test``, or an image folder with one subfolder per class (``train/`` and
``test/`` inside it, or one set of class folders split by a seeded, per-class test fraction).

The files are data: the ``.npz`` is read without pickle, images through Pillow. Channels, size,
value range, class names and labels are checked on load against what the card declares, and
every mismatch is one line naming the file and the fix. A model card or a suite card names the
dataset as it names a built-in one; its identity (bench.cards) includes the content digest
here, so changed files retrain rather than reuse stale checkpoints."""

from __future__ import annotations

import functools
import hashlib
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import torch
from pydantic import ConfigDict, Field

from bench.data.base import ImageDataset
from bench.errors import CardError, DataNotFound

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
Side = Annotated[int, Field(ge=1, le=4096)]


@dataclass(frozen=True)
class DatasetCard:
    __pydantic_config__ = ConfigDict(extra="forbid")
    kind: Literal["npz", "imagefolder"]
    path: str  # relative to the card's folder
    channels: Literal[1, 3]
    size: tuple[Side, Side]  # height, width
    # npz: required (label i is classes[i]); imagefolder: the class folders' names (sorted) if omitted
    classes: tuple[Annotated[str, Field(min_length=1, max_length=200)], ...] = ()
    values: Literal["uint8", "unit"] = "uint8"  # npz arrays: 0-255 integers, or floats in [0, 1]
    test_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.2  # imagefolder without train/ and test/
    split_seed: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0
    description: str = ""
    name: str = ""  # the file's stem, set on load
    card_path: str = ""

    @property
    def data_path(self) -> Path:
        return (Path(self.card_path).parent / self.path).resolve()


def dataset_card_names() -> list[str]:
    from bench.cards import card_names

    return card_names("datasets")


def load_dataset_card(name: str) -> DatasetCard:
    from bench.cards import read_named_card
    from bench.config import parse
    from bench.data.base import DATASETS

    path, where, raw = read_named_card("datasets", name, "dataset", ("name", "card_path"))

    if path.stem in DATASETS:
        raise CardError(f"{where}: {path.stem!r} is a built-in dataset's name; rename the card")
    card = parse(DatasetCard, raw, where)
    if len(set(card.classes)) != len(card.classes):
        raise CardError(f"{where}: key 'classes' lists a name more than once; list each once")
    if card.kind == "npz" and len(card.classes) < 2:
        raise CardError(f"{where}: key 'classes' must name the npz's classes in label order (at least 2)")
    card = DatasetCard(**{**card.__dict__, "name": path.stem, "card_path": where})
    if not card.data_path.exists():
        raise DataNotFound(f"{where}: key 'path': {card.data_path} does not exist; point it at the {card.kind}")
    return card


def dataset_fingerprint(name: str) -> str:
    """The card and every data file's bytes, hashed: what a model trained on it depends on."""
    card = load_dataset_card(name)
    return _fingerprint(card, *_stamp(card))


def load_card_dataset(name: str) -> ImageDataset:
    card = load_dataset_card(name)
    return _load(card, *_stamp(card))


def _stamp(card: DatasetCard) -> tuple[str, tuple]:
    """What invalidates the per-process caches: the card's text and the data files' sizes and
    modification times."""
    files = _data_files(card)
    return Path(card.card_path).read_text(), tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files)


def _data_files(card: DatasetCard) -> list[Path]:
    if card.kind == "npz":
        return [card.data_path]
    return sorted(p for p in card.data_path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


@functools.lru_cache(maxsize=8)
def _fingerprint(card: DatasetCard, text: str, files: tuple) -> str:
    h = hashlib.sha256(text.encode())
    root = card.data_path if card.kind == "imagefolder" else card.data_path.parent
    for path, _, _ in files:
        h.update(str(Path(path).relative_to(root)).encode())
        h.update(Path(path).read_bytes())
    return h.hexdigest()[:16]


@functools.lru_cache(maxsize=4)
def _load(card: DatasetCard, text: str, files: tuple) -> ImageDataset:
    where = card.card_path
    if card.kind == "npz":
        (train_x, train_y), (test_x, test_y), classes = _read_npz(card)
    else:
        (train_x, train_y), (test_x, test_y), classes = _read_folder(card)
    for split, y in (("training", train_y), ("test", test_y)):
        counts = np.bincount(y, minlength=len(classes))
        if split == "training" and (empty := [classes[i] for i in np.flatnonzero(counts == 0)]):
            raise DataNotFound(
                f"{card.data_path}: class(es) {empty} have no training images; add images or remove them from {where}"
            )
        if len(y) == 0:
            raise DataNotFound(f"{card.data_path}: the {split} split is empty; add {split} images")
    return ImageDataset(
        name=card.name,
        train_x=torch.from_numpy(train_x),
        train_y=torch.from_numpy(train_y),
        test_x=torch.from_numpy(test_x),
        test_y=torch.from_numpy(test_y),
        classes=tuple(classes),
        source=f"{card.kind}:{card.data_path.name}",
    )


# --------------------------------------------------------------------------- npz
def _read_npz(card: DatasetCard):
    path = card.data_path
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in NPZ_KEYS if k not in npz.files]
            if missing:
                raise DataNotFound(f"{path}: lacks arrays {missing}; an npz card needs {', '.join(NPZ_KEYS)}")
            arrays = {k: npz[k] for k in NPZ_KEYS}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataNotFound(f"{path}: not a readable npz ({exc}); write it with numpy.savez") from None
    n = len(card.classes)
    splits = []
    for split in ("train", "test"):
        x = _images(card, arrays[f"x_{split}"], f"{path}: x_{split}")
        y = _labels(arrays[f"y_{split}"], n, f"{path}: y_{split}", len(x))
        splits.append((x, y))
    return splits[0], splits[1], list(card.classes)


def _images(card: DatasetCard, x: np.ndarray, where: str) -> np.ndarray:
    """N x H x W, N x H x W x C or N x C x H x W, as the card's channels and size -> uint8 N x C x H x W."""
    h, w, c = *card.size, card.channels
    if x.ndim == 3 and c == 1 and x.shape[1:] == (h, w):
        x = x[:, None]
    elif x.ndim == 4 and x.shape[1:] == (h, w, c) and x.shape[1:] != (c, h, w):
        x = x.transpose(0, 3, 1, 2)
    elif not (x.ndim == 4 and x.shape[1:] == (c, h, w)):
        raise DataNotFound(
            f"{where}: shape {tuple(x.shape)} is not N x {h} x {w} x {c} or N x {c} x {h} x {w} "
            f"(the card's channels = {c}, size = [{h}, {w}]); fix the card or the array"
        )
    if card.values == "uint8":
        if x.dtype != np.uint8:
            raise DataNotFound(
                f"{where}: dtype {x.dtype}, but the card says values = 'uint8'; store uint8 0-255, or set "
                "values = 'unit' for floats in [0, 1]"
            )
        return np.ascontiguousarray(x)
    if x.dtype.kind != "f":
        raise DataNotFound(f"{where}: dtype {x.dtype}, but the card says values = 'unit' (floats in [0, 1])")
    if not np.isfinite(x).all() or x.min(initial=0.0) < 0 or x.max(initial=0.0) > 1:
        raise DataNotFound(
            f"{where}: values outside [0, 1] (min {np.nanmin(x):g}, max {np.nanmax(x):g}) or not finite; "
            "the card says values = 'unit'"
        )
    return np.ascontiguousarray(np.rint(x * 255).astype(np.uint8))  # kept as 8 bits, like every dataset here


def _labels(y: np.ndarray, n_classes: int, where: str, n_images: int) -> np.ndarray:
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise DataNotFound(f"{where}: labels must be a 1-D integer array (got {y.dtype}, shape {tuple(y.shape)})")
    if len(y) != n_images:
        raise DataNotFound(f"{where}: {len(y)} labels for {n_images} images; give one label per image")
    if len(y) and (y.min() < 0 or y.max() >= n_classes):
        raise DataNotFound(
            f"{where}: labels {int(y.min())}..{int(y.max())} outside 0..{n_classes - 1} (the card names "
            f"{n_classes} classes); fix the labels or the card's 'classes'"
        )
    return y.astype(np.int64)


# --------------------------------------------------------------------------- image folder
def _read_folder(card: DatasetCard):
    root = card.data_path
    if (root / "train").is_dir() and (root / "test").is_dir():
        classes = _class_names(card, root / "train")
        test_classes = sorted(p.name for p in (root / "test").iterdir() if p.is_dir())
        if extra := sorted(set(test_classes) - set(classes)):
            raise DataNotFound(f"{root / 'test'}: class folders {extra} are not in {root / 'train'}; rename or remove")
        train = _read_classes(card, root / "train", classes)
        test = _read_classes(card, root / "test", classes)
        return train, test, classes
    classes = _class_names(card, root)
    x, y = _read_classes(card, root, classes)
    rng = np.random.default_rng(card.split_seed)
    test_idx = []
    for k in range(len(classes)):  # per class: every class in both splits where it has 2+ images
        members = np.flatnonzero(y == k)
        n_test = min(len(members) - 1, max(1, round(card.test_fraction * len(members))))
        test_idx.extend(rng.permutation(members)[:n_test].tolist())
    test = np.zeros(len(y), bool)
    test[test_idx] = True
    return (x[~test], y[~test]), (x[test], y[test]), classes


def _class_names(card: DatasetCard, folder: Path) -> list[str]:
    found = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if not found:
        raise DataNotFound(f"{folder}: no class folders; put each class's images in a subfolder named by the class")
    if card.classes and set(card.classes) != set(found):
        missing, extra = sorted(set(card.classes) - set(found)), sorted(set(found) - set(card.classes))
        raise DataNotFound(
            f"{folder}: class folders differ from the card's 'classes' (no folder for {missing}, not in the card: "
            f"{extra}); rename the folders or fix the card"
        )
    return list(card.classes) if card.classes else found


def _read_classes(card: DatasetCard, folder: Path, classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image, UnidentifiedImageError

    h, w = card.size
    mode = "L" if card.channels == 1 else "RGB"
    images, labels = [], []
    for k, name in enumerate(classes):
        files = sorted(p for p in (folder / name).glob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        for path in files:
            try:
                with Image.open(path) as img:
                    img.load()
                    if img.size != (w, h):
                        raise DataNotFound(
                            f"{path}: {img.size[1]} x {img.size[0]} pixels, the card says size = [{h}, {w}]; "
                            "resize the images or fix the card"
                        )
                    array = np.asarray(img.convert(mode), dtype=np.uint8)
            except (OSError, UnidentifiedImageError) as exc:
                raise DataNotFound(f"{path}: not a readable image ({exc}); remove or replace it") from None
            images.append(array[None] if card.channels == 1 else array.transpose(2, 0, 1))
            labels.append(k)
    if not images:
        raise DataNotFound(f"{folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in its class folders")
    return np.stack(images), np.asarray(labels, np.int64)
