"""Datasets: a registry of image classification sets (grayscale or RGB), as uint8 N x C x H x W tensors."""

# importing the modules registers their datasets
from bench.data import cifar, fmnist  # noqa: E402,F401
from bench.data.base import DATASETS, ImageDataset, is_dataset_card, load_dataset, to_float
from bench.data.splits import eval_subset, train_val_split

__all__ = [
    "DATASETS",
    "ImageDataset",
    "is_dataset_card",
    "eval_subset",
    "load_dataset",
    "to_float",
    "train_val_split",
]
