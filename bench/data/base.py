"""The dataset type, the registry, and where datasets are searched for on disk."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from bench.errors import UnknownName
from bench.registry import Registry


@dataclass(frozen=True)
class ImageDataset:
    """Images kept as uint8 (4x smaller than float), N x C x H x W with C = 1 (grayscale) or 3
    (RGB); ``to_float`` maps them to [0,1]."""

    name: str
    train_x: torch.Tensor  # uint8, N x C x H x W
    train_y: torch.Tensor  # int64, N
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: tuple[str, ...]
    source: str  # where it was read from, for provenance

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_x.shape[1:])  # type: ignore[return-value]


Loader = Callable[[Path | None], ImageDataset]
DATASETS: Registry[Loader] = Registry("dataset")


def to_float(x: torch.Tensor) -> torch.Tensor:
    return x.float().div_(255.0)


def load_dataset(name: str, data_root: Path | None = None, where: str = "") -> ImageDataset:
    """A registered dataset, or one declared by a dataset card (bench.data.card)."""
    if is_dataset_card(name, where):
        from bench.data.card import load_card_dataset

        return load_card_dataset(name)
    return DATASETS.get(name, where)(data_root)


def is_dataset_card(name: str, where: str = "") -> bool:
    """Whether ``name`` is a dataset card's (checked as it loads); UnknownName, listing both
    kinds, where it is neither a card's nor a registered dataset's."""
    if name in DATASETS:
        return False
    from bench.data.card import dataset_card_names, load_dataset_card

    if name not in dataset_card_names():
        raise UnknownName("dataset", name, sorted({*DATASETS.names(), *dataset_card_names()}), where)
    load_dataset_card(name)
    return True


def search_roots(data_root: Path | None) -> list[Path]:
    """``--data-root``, then ``$BENCH_DATA``, then the per-user cache (where downloads go)."""
    roots = [data_root] if data_root else []
    if os.environ.get("BENCH_DATA"):
        roots.append(Path(os.environ["BENCH_DATA"]))
    roots.append(download_root(data_root))
    return list(dict.fromkeys(roots))


def download_root(data_root: Path | None) -> Path:
    if data_root:
        return data_root
    if os.environ.get("BENCH_DATA"):
        return Path(os.environ["BENCH_DATA"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "neuroreg-bench" / "data"


def downloads_allowed() -> bool:
    """Tests and offline machines set ``BENCH_NO_DOWNLOAD=1``."""
    return os.environ.get("BENCH_NO_DOWNLOAD", "") in ("", "0")
