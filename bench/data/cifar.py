"""CIFAR-10/100 in colour and in grayscale (ITU-R 601 luma), through torchvision's own loaders
and on-disk format."""

from __future__ import annotations

from pathlib import Path

import torch

from bench.data.base import DATASETS, ImageDataset, download_root, downloads_allowed, search_roots
from bench.errors import DataNotFound


def _load(cls_name: str, name: str, folder: str, data_root: Path | None, gray: bool) -> ImageDataset:
    """torchvision is imported here, not with the package: it costs every process that never
    reads CIFAR (a worker, the CLI) about 2 s of start-up."""
    import torchvision
    from torchvision.transforms.v2 import functional as TF

    cls = getattr(torchvision.datasets, cls_name)
    roots = search_roots(data_root)
    for root in roots:
        if (root / folder).is_dir():
            try:
                train = cls(str(root), train=True, download=False)
                test = cls(str(root), train=False, download=False)
            except RuntimeError as exc:  # torchvision: "Dataset not found or corrupted"
                raise DataNotFound(f"{root / folder}: {exc}; delete the folder and download again") from None
            break
    else:
        if not downloads_allowed():
            raise DataNotFound(
                f"{name}: '{folder}' not found in {', '.join(map(str, roots))} and downloads are "
                f"disabled; put torchvision's '{folder}' folder under --data-root DIR or BENCH_DATA"
            )
        root = download_root(data_root)
        try:
            train = cls(str(root), train=True, download=True)
            test = cls(str(root), train=False, download=True)
        except Exception as exc:
            raise DataNotFound(
                f"{name}: not found in {', '.join(map(str, roots))} and download failed ({exc}); "
                f"put torchvision's '{folder}' folder under --data-root DIR or BENCH_DATA"
            ) from None

    def images(data) -> torch.Tensor:  # N x H x W x 3 uint8 -> N x C x H x W uint8
        rgb = torch.from_numpy(data).permute(0, 3, 1, 2).contiguous()
        return TF.rgb_to_grayscale(rgb) if gray else rgb

    return ImageDataset(
        name=name,
        train_x=images(train.data),
        train_y=torch.tensor(train.targets, dtype=torch.int64),
        test_x=images(test.data),
        test_y=torch.tensor(test.targets, dtype=torch.int64),
        classes=tuple(train.classes),
        source=str(Path(root) / folder),
    )


@DATASETS.register("cifar10-gray")
def load_cifar10_gray(data_root: Path | None) -> ImageDataset:
    return _load("CIFAR10", "cifar10-gray", "cifar-10-batches-py", data_root, gray=True)


@DATASETS.register("cifar100-gray")
def load_cifar100_gray(data_root: Path | None) -> ImageDataset:
    return _load("CIFAR100", "cifar100-gray", "cifar-100-python", data_root, gray=True)


@DATASETS.register("cifar10")
def load_cifar10(data_root: Path | None) -> ImageDataset:
    return _load("CIFAR10", "cifar10", "cifar-10-batches-py", data_root, gray=False)


@DATASETS.register("cifar100")
def load_cifar100(data_root: Path | None) -> ImageDataset:
    return _load("CIFAR100", "cifar100", "cifar-100-python", data_root, gray=False)
