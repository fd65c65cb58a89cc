"""Outside models: external cards (python factory + weights, TorchScript, torch.export, a
neuroreg-bench export), ``bench.evaluate``, RGB datasets, and the one-line errors."""

from __future__ import annotations

import sqlite3

import pandas as pd
import pytest
import torch
import torchvision
from conftest import enter, fake_cifar10, run_cli, write_card_root
from torch import nn

import bench
from bench.errors import BenchError
from bench.external.sources import CODE_KINDS

EXT_SUITE = """
version = 1
dataset = "{dataset}"
models = {models}
seeds = [0]
batch_size = 32

[subset]
size = 40
seed = 0

[[evaluations]]
kind = "noise"
noise = "gaussian"
levels = [0.0, 0.2]

[[evaluations]]
kind = "pgd"
norm = "linf"
epsilons = [0.0, 0.03]
steps = 3

[[evaluations]]
kind = "minimal"
attacks = ["deepfool", "fmn"]
norms = ["l2"]
max_images = 8
deepfool = {{ steps = 5 }}
fmn = {{ steps = 5 }}

[[evaluations]]
kind = "corruptions"
corruptions = ["gaussian_noise", "snow", "contrast"]
severities = [1, 5]
max_images = 16
"""


class SmallCNN(nn.Module):
    """An outside architecture: nothing of the zoo's (no taps, no layer weights). ``noise``: a
    randomized input layer even in eval mode; ``batch_stats``: batch-norm always on the batch's
    statistics (two ways an outside model is irreproducible)."""

    def __init__(self, channels: int = 1, classes: int = 10, noise: bool = False, batch_stats: bool = False):
        super().__init__()
        self.noise, self.batch_stats = noise, batch_stats
        self.body = nn.Sequential(
            nn.Conv2d(channels, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(16, classes)

    def forward(self, x):
        if self.noise:
            x = x + 0.1 * torch.randn_like(x)
        if self.batch_stats:
            x = nn.functional.batch_norm(x, None, None, training=True)
        return self.head(self.body(x))


def small_cnn(
    channels: int = 1,
    classes: int = 10,
    fail: bool = False,
    nan: bool = False,
    noise: bool = False,
    batch_stats: bool = False,
) -> nn.Module:
    """The factory external cards name ('test_external:small_cnn')."""
    if fail:
        raise RuntimeError("cannot build this network")
    model = SmallCNN(channels, classes, noise, batch_stats)
    if nan:
        model.head.bias.data[0] = float("nan")
    return model


def trained_cnn(channels: int, x: torch.Tensor, y: torch.Tensor, steps: int = 60) -> SmallCNN:
    torch.manual_seed(0)
    model = SmallCNN(channels)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for k in range(steps):
        idx = torch.arange(k * 32, (k + 1) * 32) % len(x)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
    return model.eval()


def fmnist_cnn() -> SmallCNN:
    from bench.data import load_dataset, to_float

    ds = load_dataset("fmnist-mini")
    return trained_cnn(1, to_float(ds.train_x[:1024]), ds.train_y[:1024], steps=120)


def save_three_ways(model: nn.Module, folder, shape) -> None:
    """A state_dict (for a python-factory card), TorchScript and a torch.export program."""
    torch.save(model.state_dict(), folder / "cnn.pt")
    torch.jit.save(torch.jit.script(model), folder / "cnn.ts")
    example = torch.rand(2, *shape)
    program = torch.export.export(model, (example,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, folder / "cnn.pt2")


def external_card(
    kind: str, path: str, channels: int = 1, size: int = 28, extra: str = "", factory: str = "", trust: bool = True
) -> str:
    """A card for a model these tests saved themselves (trusted: the tests wrote its code)."""
    source = f'kind = "{kind}"\npath = "{path}"\n' + (f'factory = "{factory}"\n' if factory else "")
    trusted = "trust_code = true\n" if trust and kind in CODE_KINDS else ""
    return f'description = "outside model"\n{trusted}[source]\n{source}{extra}\n[input]\nchannels = {channels}\nsize = [{size}, {size}]\n'


def value_table(results: pd.DataFrame, model: str) -> pd.DataFrame:
    rows = results[results["model"] == model]
    return rows[["evaluation", "param", "statistic", "value"]].reset_index(drop=True)


@pytest.fixture
def three_way(tmp_path, monkeypatch):
    root = write_card_root(tmp_path / "cards")
    model = fmnist_cnn()
    save_three_ways(model, root / "models", (1, 28, 28))
    cards = {
        "ext-python": external_card("python", "cnn.pt", factory="test_external:small_cnn"),
        "ext-torchscript": external_card("torchscript", "cnn.ts"),
        "ext-exported": external_card("exported", "cnn.pt2"),
    }
    for name, text in cards.items():
        (root / "models" / f"{name}.toml").write_text(text)
    suite = EXT_SUITE.format(dataset="fmnist-mini", models=list(cards))
    (root / "suites" / "ext.toml").write_text(suite)
    enter(root, monkeypatch)
    return root, model


def test_one_cnn_saved_three_ways_gives_the_same_numbers_as_bench_evaluate(three_way, monkeypatch):
    root, model = three_way
    code, out, err = run_cli("run", "ext", "--device", "cpu")
    assert code == 0, err
    results = pd.read_csv(root / "reports" / "ext" / "results.csv")
    assert set(results["regularizer"]) == {"external"}
    reference = value_table(results, "ext-python")
    assert len(reference) > 20 and reference["value"].between(0.3, 1.0).any()  # a model that learned
    for name in ("ext-torchscript", "ext-exported"):
        pd.testing.assert_frame_equal(value_table(results, name), reference, check_exact=True)
    # one weights hash for the three files; provenance pages name file and sha256
    assert results.groupby("model")["checkpoint_hash"].first().nunique() == 1
    page = (root / "reports" / "ext" / "models" / "ext-exported.md").read_text()
    assert "sha256" in page and "cnn.pt2" in page and "not trained by neuroreg-bench" in page

    import bench.compute as runner

    loads, load = [], runner.evaluated_model
    monkeypatch.setattr(runner, "evaluated_model", lambda card, *a: loads.append(card.name) or load(card, *a))
    api = bench.evaluate(model, "ext", name="my-cnn", device="cpu")
    assert list(api.columns) == list(results.columns)
    assert loads == ["my-cnn"] and api["evaluation"].nunique() > 3  # one load for all the model's cells
    pd.testing.assert_frame_equal(value_table(api, "my-cnn"), reference, check_exact=True)

    # the same weights again: read from the store, nothing computed
    from bench.compute import CellComputer

    monkeypatch.setattr(CellComputer, "compute", lambda *a: pytest.fail("recomputed a stored cell"))
    again = bench.evaluate(fmnist_cnn(), "ext", name="my-cnn", device="cpu")
    pd.testing.assert_frame_equal(again, api)
    # another input contract is another model: not read from the store
    with pytest.raises(pytest.fail.Exception, match="recomputed"):
        bench.evaluate(model, "ext", name="my-cnn", device="cpu", mean=[0.5], std=[0.5])
    # read-only commands never load an outside model: its cells are found by its card hash
    from bench.external.card import ExternalCard

    published = (root / "reports" / "ext" / "results.csv").read_bytes()
    monkeypatch.setattr(ExternalCard, "load", lambda *a, **k: pytest.fail("loaded an outside model"))
    code, out, err = run_cli("report", "ext", "--device", "cpu")
    assert code == 0 and "ext-exported" in out, err
    assert (root / "reports" / "ext" / "results.csv").read_bytes() == published
    code, out, err = run_cli("status", "ext", "--device", "cpu")
    assert code == 0 and "15 cells: 15 stored" in out, err


def test_a_zoo_model_exported_and_reimported_as_an_external_card_is_bit_identical(cards, tmp_path):
    suite = EXT_SUITE.format(dataset="fmnist-mini", models=["tiny-none"])
    (cards / "suites" / "zoo.toml").write_text(suite)
    assert run_cli("run", "zoo", "--device", "cpu")[0] == 0
    assert run_cli("zoo", "export", "tiny-none", "--to", str(cards / "models" / "tiny.pt"), "--device", "cpu")[0] == 0
    (cards / "models" / "ext-tiny.toml").write_text(external_card("checkpoint", "tiny.pt"))
    (cards / "suites" / "both.toml").write_text(
        EXT_SUITE.format(dataset="fmnist-mini", models=["tiny-none", "ext-tiny"])
    )
    code, out, err = run_cli("run", "both", "--device", "cpu")
    assert code == 0, err
    results = pd.read_csv(cards / "reports" / "both" / "results.csv")
    pd.testing.assert_frame_equal(value_table(results, "ext-tiny"), value_table(results, "tiny-none"), check_exact=True)
    hashes = results.groupby("model")["checkpoint_hash"].first()
    assert hashes["ext-tiny"] == hashes["tiny-none"]  # the same weights, whatever the file


RGB_SUITE = """
version = 1
dataset = "cifar10"
models = ["rgb-cnn", "rgb-source"]
seeds = [0]
batch_size = 32

[subset]
size = 24
seed = 0

[[evaluations]]
kind = "noise"
noise = "gaussian"
levels = [0.0, 0.1]

[[evaluations]]
kind = "noise"
noise = "uniform"
levels = [0.0, 0.1]

[[evaluations]]
kind = "noise"
noise = "saltpepper"
levels = [0.0, 0.05]

[[evaluations]]
kind = "pgd"
norm = "l2"
epsilons = [0.0, 0.2]
steps = 3

[[evaluations]]
kind = "minimal"
attacks = ["pgd", "deepfool", "fmn", "boundary"]  # Brendel-Bethge's numba compile alone is a minute
norms = ["l2", "linf"]
max_images = 4
pgd = { steps = 5, search_steps = 3 }
deepfool = { steps = 5 }
fmn = { steps = 5 }
boundary = { steps = 20 }

[[evaluations]]
kind = "transfer"
source = "rgb-source"
norm = "linf"
epsilons = [0.0, 0.03]
steps = 3

[[evaluations]]
kind = "autoattack"
norm = "linf"
epsilons = [0.0, 0.02]
version = "custom"
attacks = ["apgd-ce"]
max_images = 4

[[evaluations]]
kind = "corruptions"
severities = [2]
max_images = 6
"""


def test_an_rgb_model_on_colour_cifar_runs_every_evaluation_kind(tmp_path, monkeypatch):
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *a, **k: True)  # fake files
    data = tmp_path / "data"
    fake_cifar10(data, n_train=256, n_test=64, seed=3)
    from bench.data import load_dataset, to_float

    ds = load_dataset("cifar10", data)
    assert ds.train_x.shape == (255, 3, 32, 32) and ds.test_x.shape == (64, 3, 32, 32)
    assert load_dataset("cifar10-gray", data).test_x.shape == (64, 1, 32, 32)
    root = write_card_root(tmp_path / "cards")
    for name, steps in (("rgb-cnn", 80), ("rgb-source", 40)):
        model = trained_cnn(3, to_float(ds.train_x), ds.train_y, steps)
        torch.save(model.state_dict(), root / "models" / f"{name}.pt")
        card = external_card("python", f"{name}.pt", channels=3, size=32, factory="test_external:small_cnn")
        (root / "models" / f"{name}.toml").write_text(card + "range = [0.0, 1.0]\n" + "[source.kwargs]\nchannels = 3\n")
    (root / "suites" / "rgb.toml").write_text(RGB_SUITE)
    enter(root, monkeypatch)
    code, out, err = run_cli("run", "rgb", "--device", "cpu", "--data-root", str(data))
    assert code == 0, err
    results = pd.read_csv(root / "reports" / "rgb" / "results.csv")
    mine = results[results["model"] == "rgb-cnn"]
    evaluations = set(mine["evaluation"])
    expected = {"clean", "noise-gaussian", "noise-uniform", "noise-saltpepper", "pgd-l2", "minimal-l2", "minimal-linf"}
    expected |= {"ensemble-l2", "transfer-linf:rgb-source", "autoattack-linf", "corruptions"}
    assert expected <= evaluations, sorted(expected - evaluations)
    assert mine["value"].notna().all()
    clean = mine[mine["evaluation"] == "clean"]["value"].iloc[0]
    assert clean > 0.3  # it learned the colour cue: the numbers are not those of a model at chance
    assert len(mine[mine["evaluation"].str.startswith("corruption-")]) >= 15


@pytest.mark.parametrize(
    "card, message",
    [
        (external_card("python", "cnn.pt", channels=3, factory="test_external:small_cnn"), "input.channels"),
        (external_card("python", "cnn.pt", size=32, factory="test_external:small_cnn"), "input.size"),
        (
            external_card(
                "python", "cnn.pt", factory="test_external:small_cnn", extra="[source.kwargs]\nclasses = 7\n"
            ),
            "weights",
        ),
        (
            external_card(
                "python", "cnn.pt", factory="test_external:small_cnn", extra="[source.kwargs]\nfail = true\n"
            ),
            "raised",
        ),
        (external_card("python", "cnn.pt", factory="test_external:no_such"), "cannot import"),
        (external_card("python", "nan.pt", factory="test_external:small_cnn"), "non-finite"),
        (
            external_card(
                "python", "cnn.pt", factory="test_external:small_cnn", extra="[source.kwargs]\nnoise = true\n"
            ),
            "twice in a row",
        ),
        (
            external_card(
                "python", "cnn.pt", factory="test_external:small_cnn", extra="[source.kwargs]\nbatch_stats = true\n"
            ),
            "in a batch of",
        ),
        (
            external_card(
                "python", "seven.pt", factory="test_external:small_cnn", extra="[source.kwargs]\nclasses = 7\n"
            ),
            "10 classes",
        ),
        (external_card("torchscript", "cnn.pt"), "TorchScript"),
        (external_card("exported", "fixed.pt2"), "dynamic batch"),
        (external_card("exported", "missing.pt2"), "no such file"),
    ],
)
def test_a_model_that_does_not_fit_is_one_line_exit_2_and_nothing_stored(tmp_path, monkeypatch, card, message):
    root = write_card_root(tmp_path / "cards")
    models = root / "models"
    torch.manual_seed(0)
    torch.save(small_cnn().state_dict(), models / "cnn.pt")
    torch.save(small_cnn(nan=True).state_dict(), models / "nan.pt")
    torch.save(small_cnn(classes=7).state_dict(), models / "seven.pt")
    fixed = torch.export.export(small_cnn().eval(), (torch.rand(2, 1, 28, 28),))
    torch.export.save(fixed, models / "fixed.pt2")
    (models / "bad.toml").write_text(card)
    (root / "suites" / "bad.toml").write_text(EXT_SUITE.format(dataset="fmnist-mini", models=["bad"]))
    enter(root, monkeypatch)
    code, out, err = run_cli("run", "bad", "--device", "cpu")
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(lines) == 1 and message in lines[0] and "bad.toml" in lines[0], err
    db = root / ".bench" / "results.sqlite"
    if db.exists():
        with sqlite3.connect(db) as con:
            assert con.execute("SELECT COUNT(*) FROM cells").fetchone()[0] == 0


def test_bench_evaluate_rejects_what_is_not_a_model_and_a_taken_name(cards):
    (cards / "suites" / "ext.toml").write_text(EXT_SUITE.format(dataset="fmnist-mini", models=["tiny-none"]))
    with pytest.raises(BenchError, match="not a torch.nn.Module"):
        bench.evaluate(lambda x: x, "ext", name="f")
    with pytest.raises(BenchError, match="another name"):
        bench.evaluate(SmallCNN(), "ext", name="tiny-none")
    with pytest.raises(BenchError, match=r"range \[1.0, 0.0\]"):
        bench.evaluate(SmallCNN(), "ext", name="m", value_range=(1.0, 0.0))


def test_external_cards_are_validated_on_load(cards):
    from bench.cards import load_model_card

    models = cards / "models"
    (models / "x.toml").write_text(external_card("python", "w.pt"))
    with pytest.raises(BenchError, match="source.factory' is required"):
        load_model_card("x")
    (models / "x.toml").write_text(external_card("onnx", "w.onnx"))
    with pytest.raises(BenchError, match="source.kind"):
        load_model_card("x")
    (models / "x.toml").write_text(external_card("torchscript", "w.ts") + "mean = [0.5]\n")
    with pytest.raises(BenchError, match="mean and std"):
        load_model_card("x")
    (models / "x.toml").write_text(external_card("torchscript", "w.ts"))
    card, zoo = load_model_card("x"), load_model_card("tiny-none")
    assert card.external and not zoo.external and card.regularizer_label == "external"
    assert card.file == models / "w.ts"  # relative to the card


def test_bench_evaluate_trains_a_transfer_source_but_evaluates_only_the_given_model(cards):
    suite = EXT_SUITE.format(dataset="fmnist-mini", models=["tiny-none"])
    suite += (
        '\n[[evaluations]]\nkind = "transfer"\nsource = "tiny-none"\nnorm = "linf"\nepsilons = [0.0, 0.03]\nsteps = 3\n'
    )
    (cards / "suites" / "src.toml").write_text(suite)
    rows = bench.evaluate(fmnist_cnn(), "src", name="mine", device="cpu")
    assert set(rows["model"]) == {"mine"} and "transfer-linf:tiny-none" in set(rows["evaluation"])
    with sqlite3.connect(cards / ".bench" / "results.sqlite") as con:
        assert {m for (m,) in con.execute("SELECT DISTINCT model FROM cells")} == {"mine"}
        assert con.execute("SELECT COUNT(*) FROM trainings WHERE model = 'tiny-none'").fetchone()[0] == 1
