"""Every plug-in is tested by existing. Each test below runs over every entry of a registry, so a
new registration is covered the moment it is made. Where an entry needs an example (a card table,
a tiny schedule), it has one here, and a registration without one fails
``test_every_entry_has_an_example`` until it gets one. Every evaluation kind and minimal attack runs
end to end in tests/test_battery.py's BATTERY_SUITE, which the coverage test below checks."""

from __future__ import annotations

import tomllib

import pytest
import torch

from bench.data import DATASETS, load_dataset, to_float
from bench.evals import EVALUATIONS
from bench.evals.attacks import MINIMAL_ATTACKS
from bench.evals.cifar_c import CORRUPTIONS, corrupt
from bench.executors import EXECUTORS
from bench.external.sources import SOURCES
from bench.models import build_model
from bench.models.resnet import ARCHITECTURES
from bench.targets import build_target, validate_target_spec
from bench.targets.build import SHUFFLES, TARGETS

REGISTRIES = {
    "architecture": ARCHITECTURES,
    "dataset": DATASETS,
    "evaluation": EVALUATIONS,
    "minimal attack": MINIMAL_ATTACKS,
    "corruption": CORRUPTIONS,
    "target": TARGETS,
    "shuffle": SHUFFLES,
    "model source": SOURCES,
    "executor": EXECUTORS,
}
ENTRIES = [(kind, name) for kind, registry in REGISTRIES.items() for name in registry.names()]

TINY_SIMULATION = {"n_neurons": 20, "n_images": 60, "n_oracle": 5, "n_repeats": 3, "height": 16, "width": 24}
TARGET_EXAMPLES = {
    "pixel": {"stimuli": "fmnist-mini", "n_stimuli": 30},
    "pixel-threshold": {"stimuli": "fmnist-mini", "n_stimuli": 30, "threshold": 0.5},
    "constant": {"stimuli": "fmnist-mini", "n_stimuli": 30},
    "raw": {"simulate": TINY_SIMULATION},
    "neural": {"simulate": TINY_SIMULATION, "model": {"channels": 4, "layers": 1, "max_epochs": 1}},
}
# a dataset the tests can load without downloads; the others read files (tests/test_data.py
# writes fake ones for each in torchvision's format)
OFFLINE_DATASETS = {"fmnist-mini"}


@pytest.mark.parametrize(("kind", "name"), ENTRIES, ids=[f"{k}:{n}" for k, n in ENTRIES])
def test_every_registered_entry_resolves(kind, name):
    entry = REGISTRIES[kind].get(name)  # a lazy entry imports here
    assert entry is not None and (callable(entry) or kind == "architecture")


def test_every_entry_has_an_example():
    assert set(TARGET_EXAMPLES) == set(TARGETS.names())
    from test_battery import BATTERY_SUITE

    suite = tomllib.loads(BATTERY_SUITE)
    kinds = {e["kind"] for e in suite["evaluations"]} | {"clean"}  # clean accuracy is always evaluated
    assert set(EVALUATIONS.names()) <= kinds, "add the new evaluation kind to test_battery.BATTERY_SUITE"
    minimal = next(e for e in suite["evaluations"] if e["kind"] == "minimal")
    assert set(MINIMAL_ATTACKS.names()) <= set(minimal), "give the new attack a tiny schedule in BATTERY_SUITE"
    assert set(minimal["attacks"]) == set(MINIMAL_ATTACKS.names())  # every attack runs


@pytest.mark.parametrize("name", ARCHITECTURES.names())
def test_every_architecture_builds_and_classifies(name):
    model = build_model(name, 10, 4).eval()
    with torch.no_grad():
        assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize("name", CORRUPTIONS.names())
def test_every_corruption_keeps_shape_and_range_and_changes_the_image(name):
    x = to_float(load_dataset("fmnist-mini").test_x[:2])
    for severity in (1, 5):
        out = corrupt(x, name, severity, 0)
        assert out.shape == x.shape and 0 <= float(out.min()) and float(out.max()) <= 1
        assert not torch.equal(out, x) or severity == 1


@pytest.mark.parametrize("name", TARGETS.names())
def test_every_target_kind_builds_a_similarity_in_range(name, tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    target = build_target(validate_target_spec({"kind": name, **TARGET_EXAMPLES[name]}, "example", "target"))
    s = target.lookup(torch.tensor([0, 1, 2]), torch.tensor([3, 4, 5]))
    assert target.n >= 6 and s.shape == (3,) and bool(((s >= -1) & (s <= 1)).all())


@pytest.mark.parametrize("name", SHUFFLES.names())
def test_every_shuffle_wraps_a_pixel_target_and_changes_pairs(name):
    spec = validate_target_spec(
        {"kind": "pixel-threshold", "stimuli": "fmnist-mini", "n_stimuli": 60, "threshold": 0.3, "shuffle": name},
        "example",
        "target",
    )
    target = build_target(spec, training_seed=1)
    assert 0 < target.description["pairs_changed"] <= 1 and target.matrix().shape == (60, 60)


@pytest.mark.parametrize("name", sorted(OFFLINE_DATASETS))
def test_every_offline_dataset_loads(name):
    assert set(OFFLINE_DATASETS) <= set(DATASETS.names())
    ds = load_dataset(name)
    assert len(ds.train_y) > 0 and len(ds.test_y) > 0 and ds.num_classes > 1


@pytest.mark.parametrize("name", EVALUATIONS.names())
def test_every_evaluation_carries_its_registered_name_and_curves_keep_the_base_loop(name):
    """Names are written once (the registry line); a curve evaluation says what is correct at one
    grid point and leaves the loop, the accounting and the curve's flags to the base."""
    from bench.evals.base import CurveEvaluation

    cls = EVALUATIONS.get(name)
    assert cls.kind == name
    if issubclass(cls, CurveEvaluation):
        assert cls.run is CurveEvaluation.run and cls.grid is not None
