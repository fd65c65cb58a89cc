"""Fashion-MNIST (MIT licence, Zalando Research): the full set from disk, or the balanced
subset embedded in the package (see ``embedded/LICENSE-fashion-mnist.txt``)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from bench.data.base import DATASETS, ImageDataset, download_root, downloads_allowed, search_roots
from bench.errors import DataNotFound

CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}
# Debian's `dataset-fashion-mnist` package installs the four files here.
SYSTEM_DIRS = [Path("/usr/share/datasets/fashion-mnist")]
EMBEDDED = Path(__file__).parent / "embedded" / "fmnist-mini.npz"


def read_idx(path: Path) -> np.ndarray:
    """Read an idx file (plain or gzipped). Debian recompressed the .gz files, so
    torchvision's checksums fail on them; the decompressed bytes are canonical."""
    raw = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataNotFound(f"{path}: not an idx file of unsigned bytes; replace it with the original")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DataNotFound(f"{path}: truncated idx file ({data.size} of {int(np.prod(dims))} bytes)")
    return data.reshape(dims)


def _find_idx(root: Path) -> dict[str, Path] | None:
    for folder in (root, root / "FashionMNIST" / "raw", root / "fashion-mnist"):
        found = {}
        for key, stem in FILES.items():
            for candidate in (folder / stem, folder / f"{stem}.gz"):
                if candidate.is_file():
                    found[key] = candidate
                    break
        if len(found) == len(FILES):
            return found
    return None


def _from_idx(files: dict[str, Path], name: str) -> ImageDataset:
    arrays = {k: read_idx(p) for k, p in files.items()}
    return ImageDataset(
        name=name,
        train_x=torch.from_numpy(arrays["train_x"].copy()).unsqueeze(1),
        train_y=torch.from_numpy(arrays["train_y"].astype(np.int64)),
        test_x=torch.from_numpy(arrays["test_x"].copy()).unsqueeze(1),
        test_y=torch.from_numpy(arrays["test_y"].astype(np.int64)),
        classes=CLASSES,
        source=str(files["train_x"].parent),
    )


@DATASETS.register("fmnist")
def load_fmnist(data_root: Path | None) -> ImageDataset:
    roots = search_roots(data_root) + SYSTEM_DIRS
    for root in roots:
        files = _find_idx(root)
        if files:
            return _from_idx(files, "fmnist")
    if downloads_allowed():
        import torchvision

        target = download_root(data_root)
        try:
            torchvision.datasets.FashionMNIST(str(target), train=True, download=True)
            torchvision.datasets.FashionMNIST(str(target), train=False, download=True)
        except Exception as exc:  # no network, disk full, ...
            raise DataNotFound(_missing_message(roots, f"download failed: {exc}")) from None
        files = _find_idx(target)
        if files:
            return _from_idx(files, "fmnist")
    raise DataNotFound(_missing_message(roots, "downloads disabled (BENCH_NO_DOWNLOAD)"))


def _missing_message(roots: list[Path], why: str) -> str:
    where = ", ".join(str(r) for r in roots)
    return (
        f"Fashion-MNIST not found (looked in {where}; {why}); install it with "
        "'apt-get install dataset-fashion-mnist', or pass --data-root DIR / set BENCH_DATA "
        "to a folder holding the four idx files, or use the embedded 'fmnist-mini'"
    )


@DATASETS.register("fmnist-mini")
def load_fmnist_mini(data_root: Path | None = None) -> ImageDataset:
    """The balanced subset shipped in the package: needs no download."""
    with np.load(EMBEDDED) as z:
        arrays = {k: z[k] for k in FILES}
    return ImageDataset(
        name="fmnist-mini",
        train_x=torch.from_numpy(arrays["train_x"]).unsqueeze(1),
        train_y=torch.from_numpy(arrays["train_y"].astype(np.int64)),
        test_x=torch.from_numpy(arrays["test_x"]).unsqueeze(1),
        test_y=torch.from_numpy(arrays["test_y"].astype(np.int64)),
        classes=CLASSES,
        source=f"embedded:{EMBEDDED.name}",
    )
