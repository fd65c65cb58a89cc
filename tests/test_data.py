import gzip

import numpy as np
import pytest
import torch
import torchvision
from conftest import fake_cifar10

from bench.data import eval_subset, fmnist, load_dataset, train_val_split
from bench.errors import DataNotFound, UnknownName


def test_embedded_subset_is_balanced_uint8_in_the_documented_shape():
    ds = load_dataset("fmnist-mini")
    assert ds.train_x.shape == (5000, 1, 28, 28) and ds.train_x.dtype == torch.uint8
    assert ds.test_x.shape == (1000, 1, 28, 28)
    assert torch.equal(ds.train_y.bincount(), torch.full((10,), 500))
    assert torch.equal(ds.test_y.bincount(), torch.full((10,), 100))
    assert ds.num_classes == 10 and ds.source.startswith("embedded:")


def _write_idx(path, arr):
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + arr.astype(np.uint8).tobytes())


def _fake_fmnist(root, n=12):
    rng = np.random.default_rng(0)
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n, 28, 28)),
        "train-labels-idx1-ubyte": np.arange(n) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (4, 28, 28)),
        "t10k-labels-idx1-ubyte": np.arange(4),
    }
    for name, arr in arrays.items():
        _write_idx(raw / f"{name}.gz", arr)
    return arrays


def test_full_fmnist_is_read_from_data_root_in_torchvision_layout(tmp_path, monkeypatch):
    monkeypatch.setattr(fmnist, "SYSTEM_DIRS", [])
    arrays = _fake_fmnist(tmp_path)
    ds = load_dataset("fmnist", tmp_path)
    assert ds.train_x.shape == (12, 1, 28, 28)
    assert np.array_equal(ds.train_x[:, 0].numpy(), arrays["train-images-idx3-ubyte"].astype(np.uint8))
    assert ds.test_y.tolist() == [0, 1, 2, 3]


def test_bench_data_env_is_searched(tmp_path, monkeypatch):
    monkeypatch.setattr(fmnist, "SYSTEM_DIRS", [])
    _fake_fmnist(tmp_path)
    monkeypatch.setenv("BENCH_DATA", str(tmp_path))
    assert len(load_dataset("fmnist").train_y) == 12


def test_missing_fmnist_says_where_it_looked_and_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(fmnist, "SYSTEM_DIRS", [tmp_path / "system"])
    with pytest.raises(DataNotFound) as exc:
        load_dataset("fmnist", tmp_path / "nothing")
    msg = str(exc.value)
    assert str(tmp_path / "nothing") in msg and str(tmp_path / "system") in msg
    assert "apt-get install dataset-fashion-mnist" in msg and "\n" not in msg


def test_truncated_idx_file_is_reported(tmp_path):
    p = tmp_path / "x.gz"
    with gzip.open(p, "wb") as fh:
        fh.write(bytes([0, 0, 8, 1]) + (10).to_bytes(4, "big") + b"\x01\x02")
    with pytest.raises(DataNotFound, match="truncated"):
        fmnist.read_idx(p)


def test_cifar10_gray_loads_torchvisions_format_and_converts_with_luma(tmp_path, monkeypatch):
    # torchvision checks each file against the real set's md5 sum, which a fake cannot match;
    # everything else (file names, pickle layout, plane order) is its real loading code
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *a, **k: True)
    batches = fake_cifar10(tmp_path)
    ds = load_dataset("cifar10-gray", tmp_path)
    assert ds.train_x.shape == (15, 1, 32, 32) and ds.test_x.shape == (3, 1, 32, 32)
    rgb = batches["data_batch_1"]["data"][0].reshape(3, 32, 32).astype(np.float64)
    luma = 0.2989 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    assert np.abs(ds.train_x[0, 0].numpy().astype(np.float64) - luma).max() <= 1.0
    assert ds.classes[0] == "c0" and ds.train_y[:3].tolist() == batches["data_batch_1"]["labels"]


def test_missing_cifar_without_downloads_names_the_folder(tmp_path):
    with pytest.raises(DataNotFound, match="cifar-100-python"):
        load_dataset("cifar100-gray", tmp_path)


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(UnknownName, match="cifar10, cifar10-gray, cifar100, cifar100-gray, fmnist, fmnist-mini"):
        load_dataset("mnist")


def test_split_and_subset_are_deterministic_and_the_hash_sees_the_pixels():
    tr, va = train_val_split(1000, 0.01, seed=0)
    assert len(va) == 10 and len(tr) == 990 and not set(tr.tolist()) & set(va.tolist())
    assert torch.equal(train_val_split(1000, 0.01, 0)[1], va)
    assert not torch.equal(train_val_split(1000, 0.01, 1)[1], va)
    x, y = torch.randint(0, 255, (50, 1, 4, 4), dtype=torch.uint8), torch.arange(50)
    idx, h = eval_subset(x, y, 20, seed=0)
    assert torch.equal(eval_subset(x, y, 20, 0)[0], idx) and eval_subset(x, y, 20, 0)[1] == h
    x2 = x.clone()
    x2[idx[0], 0, 0, 0] ^= 1
    assert eval_subset(x2, y, 20, 0)[1] != h
