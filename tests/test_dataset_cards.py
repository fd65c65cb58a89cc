"""Your own data as a card: a generated ``.npz`` and image folder, gray and RGB, 3 and 37
classes, load with the pixels and labels they were written with; the zoo trains on one, a suite
evaluates it and ``bench.evaluate`` takes an outside model on it; every malformed file is one
error line naming the file and the fix, with nothing written."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import enter, run_cli, write_card_root
from PIL import Image

from bench.data import load_dataset
from bench.errors import BenchError


def make_arrays(n_classes: int, channels: int, size: int, per_class: int, seed: int = 0):
    """Images whose mean brightness encodes the class (learnable), uint8 N x H x W x C."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_classes), per_class)
    base = (40 + 180 * y / max(1, n_classes - 1))[:, None, None, None]
    x = np.clip(base + rng.normal(0, 10, (len(y), size, size, channels)), 0, 255).astype(np.uint8)
    return x, y


def write_npz(path, n_classes, channels, size, unit=False):
    xtr, ytr = make_arrays(n_classes, channels, size, 12)
    xte, yte = make_arrays(n_classes, channels, size, 4, seed=1)
    if channels == 1:
        xtr, xte = xtr[..., 0], xte[..., 0]
    if unit:
        xtr, xte = xtr / 255.0, xte / 255.0
    np.savez(path, x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    return xtr, ytr, xte, yte


def write_folder(root, n_classes, channels, size, split=True):
    x, y = make_arrays(n_classes, channels, size, 6)
    mode = "L" if channels == 1 else "RGB"
    for i, (img, label) in enumerate(zip(x, y)):
        part = ("test" if i % 3 == 0 else "train") if split else ""
        folder = root / part / f"class{label:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img[..., 0] if channels == 1 else img, mode).save(folder / f"{i}.png")
    return x, y


def card(root, name, **fields):
    lines = [f"{k} = {v!r}" if not isinstance(v, (list, tuple)) else f"{k} = {list(v)!r}" for k, v in fields.items()]
    (root / "datasets").mkdir(exist_ok=True)
    (root / "datasets" / f"{name}.toml").write_text("\n".join(lines).replace("'", '"') + "\n")


@pytest.fixture
def root(tmp_path, monkeypatch):
    return enter(write_card_root(tmp_path), monkeypatch)


@pytest.mark.parametrize("channels,n_classes", [(1, 3), (3, 37)])
def test_npz_and_folder_cards_load_the_pixels_and_labels_written(root, channels, n_classes):
    classes = [f"c{i}" for i in range(n_classes)]
    xtr, ytr, xte, yte = write_npz(root / "mine.npz", n_classes, channels, 12)
    card(root, "mine", kind="npz", path="../mine.npz", channels=channels, size=[12, 12], classes=classes)
    ds = load_dataset("mine")
    expect = torch.from_numpy(xtr[:, None] if channels == 1 else xtr.transpose(0, 3, 1, 2))
    assert ds.train_x.shape == (len(ytr), channels, 12, 12) and torch.equal(ds.train_x, expect)
    assert torch.equal(ds.test_y, torch.from_numpy(yte)) and ds.classes == tuple(classes)

    write_npz(root / "unit.npz", n_classes, channels, 12, unit=True)
    card(root, "unit", kind="npz", path="../unit.npz", channels=channels, size=[12, 12], classes=classes, values="unit")
    assert torch.equal(load_dataset("unit").train_x, ds.train_x)  # floats k/255 round back to the same bytes

    x, y = write_folder(root / "folder", n_classes, channels, 10)
    card(root, "folder", kind="imagefolder", path="../folder", channels=channels, size=[10, 10])
    folder = load_dataset("folder")
    assert folder.num_classes == n_classes and folder.classes[0] == "class00"
    assert len(folder.train_y) + len(folder.test_y) == len(y) and set(folder.test_y.tolist()) == set(range(n_classes))
    first = x[0][..., 0][None] if channels == 1 else x[0].transpose(2, 0, 1)  # image 0 is test/class00/0.png
    assert torch.equal(folder.test_x[0], torch.from_numpy(first))

    write_folder(root / "flat", n_classes, channels, 10, split=False)
    card(root, "flat", kind="imagefolder", path="../flat", channels=channels, size=[10, 10], test_fraction=0.3)
    flat = load_dataset("flat")
    assert len(flat.train_y) + len(flat.test_y) == 6 * n_classes
    assert set(flat.test_y.tolist()) == set(flat.train_y.tolist()) == set(range(n_classes))  # every class in both


def bad_npz(root, **change):
    xtr, ytr, xte, yte = write_npz(root / "base.npz", 3, 1, 12)
    arrays = {"x_train": xtr, "y_train": ytr, "x_test": xte, "y_test": yte, **change}
    np.savez(root / "bad.npz", **{k: v for k, v in arrays.items() if v is not None})


CLASSES = ["a", "b", "c"]
NPZ_CASES = {
    "shape": ({"x_train": np.zeros((36, 12, 13), np.uint8)}, "shape (36, 12, 13) is not N x 12 x 12 x 1"),
    "labels": ({"y_test": np.full(12, 3)}, "labels 3..3 outside 0..2"),
    "label count": ({"y_train": np.zeros(5, np.int64)}, "5 labels for 36 images"),
    "empty class": ({"y_train": np.repeat([0, 1], 18)}, "['c'] have no training images"),
    "dtype": ({"x_test": np.zeros((12, 12, 12), np.float32)}, "dtype float32, but the card says values = 'uint8'"),
    "missing": ({"y_test": None}, "lacks arrays ['y_test']"),
}


@pytest.mark.parametrize("case", list(NPZ_CASES))
def test_a_malformed_npz_is_one_line_naming_file_and_fix(root, case):
    change, words = NPZ_CASES[case]
    bad_npz(root, **change)
    card(root, "bad", kind="npz", path="../bad.npz", channels=1, size=[12, 12], classes=CLASSES)
    with pytest.raises(BenchError, match="bad.npz") as info:
        load_dataset("bad")
    assert words in str(info.value) and "\n" not in str(info.value)


def test_a_malformed_folder_or_card_is_one_line(root):
    write_folder(root / "f", 3, 1, 10)
    card(root, "f", kind="imagefolder", path="../f", channels=1, size=[10, 10], classes=["class00", "x"])
    with pytest.raises(BenchError, match=r"no folder for \['x'\], not in the card: \['class01', 'class02'\]"):
        load_dataset("f")
    card(root, "f", kind="imagefolder", path="../f", channels=1, size=[12, 10])
    with pytest.raises(BenchError, match=r"10 x 10 pixels, the card says size = \[12, 10\]"):
        load_dataset("f")
    (root / "f" / "train" / "class01" / "9.png").write_bytes(b"not a png")
    card(root, "f", kind="imagefolder", path="../f", channels=1, size=[10, 10])
    with pytest.raises(BenchError, match="9.png: not a readable image"):
        load_dataset("f")
    card(root, "g", kind="npz", path="../nothing.npz", channels=1, size=[12, 12], classes=CLASSES)
    with pytest.raises(BenchError, match="does not exist"):
        load_dataset("g")
    card(root, "fmnist", kind="npz", path="../nothing.npz", channels=1, size=[12, 12], classes=CLASSES)
    with pytest.raises(BenchError, match="built-in dataset's name"):
        from bench.data.card import load_dataset_card

        load_dataset_card("fmnist")


SUITE = """
version = 1
dataset = "{dataset}"
models = ["mine-none"]
seeds = [0]
batch_size = 64

[subset]
size = {size}
seed = 0

[[evaluations]]
kind = "noise"
noise = "gaussian"
levels = [0.0, 0.2]

[[evaluations]]
kind = "minimal"
attacks = ["fmn"]
norms = ["l2"]
max_images = 8
fmn = {{ steps = 5 }}
"""

MODEL = """arch = "resnet18"
width = 4
dataset = "{dataset}"
[trainer]
epochs = 2
lr_step_epochs = 1
val_fraction = 0.05
augment = false
"""


def test_the_zoo_trains_a_suite_evaluates_and_bench_evaluate_takes_a_model_on_a_card(root):
    import bench

    classes = [f"c{i}" for i in range(37)]
    write_npz(root / "rgb37.npz", 37, 3, 12)
    card(root, "rgb37", kind="npz", path="../rgb37.npz", channels=3, size=[12, 12], classes=classes)
    (root / "models" / "mine-none.toml").write_text(MODEL.format(dataset="rgb37"))
    (root / "suites" / "mine.toml").write_text(SUITE.format(dataset="rgb37", size=200))
    code, out, err = run_cli("run", "mine", "--device", "cpu")
    assert code == 2 and "key 'subset.size' = 200, but dataset 'rgb37' has 148 images in its test split" in err
    assert not (root / "reports" / "mine").exists()
    (root / "suites" / "mine.toml").write_text(SUITE.format(dataset="rgb37", size=64))
    code, out, err = run_cli("run", "mine", "--device", "cpu")
    assert code == 0, err
    results = (root / "reports" / "mine" / "results.csv").read_text()
    assert "mine-none" in results and "minimal-l2" in results

    from bench.cards import load_model_card

    before = load_model_card("mine-none").card_hash
    write_npz(root / "rgb37.npz", 37, 3, 12, unit=False)  # the same bytes: the same recipe
    assert load_model_card("mine-none").card_hash == before
    xtr, ytr, xte, yte = write_npz(root / "other.npz", 37, 3, 12)
    np.savez(root / "rgb37.npz", x_train=255 - xtr, y_train=ytr, x_test=xte, y_test=yte)
    assert load_model_card("mine-none").card_hash != before  # changed data: retrain, never reuse

    outside = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 12 * 12, 37)).eval()
    rows = bench.evaluate(outside, "mine", name="linear", device="cpu", workdir=root / "ev")
    assert set(rows["model"]) == {"linear"} and (rows["n_images"] == 64).any()
    wrong = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 12 * 12, 10)).eval()
    with pytest.raises(BenchError, match="37"):
        bench.evaluate(wrong, "mine", name="ten", device="cpu", workdir=root / "ev")
