import pytest
import torch

import bench
from bench.errors import CheckpointError
from bench.io import atomic_save
from bench.models import build_model
from bench.train.checkpoint import MODEL_FORMAT, state_hash


@pytest.mark.parametrize("size", [(28, 28), (32, 32), (36, 64)])
def test_five_taps_at_any_input_size(size):
    model = build_model("resnet18", 10, width=4)
    feats = model.features(torch.rand(2, 1, *size))
    assert [f.shape[1] for f in feats] == [4, 4, 8, 16, 32]
    assert feats[0].shape[2:] == size  # conv0 is stride 1, no max-pool
    assert feats[4].shape[2] == -(-size[0] // 8)
    assert model(torch.rand(2, 1, *size)).shape == (2, 10)


def test_architecture_of_method_md():
    m18, m34 = build_model("resnet18", 10), build_model("resnet34", 100)
    conv0 = m18.conv0[0]
    assert (conv0.in_channels, conv0.out_channels, conv0.kernel_size, conv0.stride, conv0.padding) == (
        1,
        64,
        (7, 7),
        (1, 1),
        (3, 3),
    )
    assert [len(s) for s in m18.stages] == [2, 2, 2, 2] and [len(s) for s in m34.stages] == [3, 4, 6, 3]
    assert m18.head.in_features == 512 and m34.head.out_features == 100
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in m18.modules())


def test_inputs_are_mapped_to_5_times_x_minus_half_inside():
    model = build_model("resnet18", 10, width=4).eval()
    x = torch.rand(2, 1, 28, 28)
    assert torch.allclose(model.features(x)[0], model.conv0(5 * (x - 0.5)))


def _export(model, path):
    sd = model.state_dict()
    atomic_save(
        {
            "format": MODEL_FORMAT,
            "format_version": 1,
            "config": model.config,
            "state_dict": sd,
            "state_hash": state_hash(sd),
        },
        path,
    )


def test_load_model_round_trip_gives_eval_mode_and_same_logits(tmp_path):
    torch.manual_seed(0)
    model = build_model("resnet18", 10, width=4)
    model(torch.rand(8, 1, 28, 28))  # move BN running stats away from their init
    _export(model, tmp_path / "m.pt")
    loaded = bench.load_model(tmp_path / "m.pt")
    assert not loaded.training
    x = torch.rand(3, 1, 28, 28)
    assert torch.equal(loaded(x), model.eval()(x))
    assert not list(tmp_path.glob(".*tmp"))  # atomic save leaves no temporary file


def test_invalid_checkpoints_get_a_clear_error(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(
        CheckpointError,
        match=r"junk.pt: not a readable model checkpoint \(weights-only load refused: "
        r"Unsupported operand 110\); delete it and train the model again",
    ):
        bench.load_model(tmp_path / "junk.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a neuroreg-bench/model file"):
        bench.load_model(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="no such model checkpoint"):
        bench.load_model(tmp_path / "missing.pt")
    torch.save(
        {
            "format": MODEL_FORMAT,
            "config": {"blocks": [2, 2, 2, 2], "num_classes": 10, "width": 4, "in_channels": 1},
            "state_dict": {"x": torch.zeros(1)},
        },
        tmp_path / "bad.pt",
    )
    with pytest.raises(CheckpointError, match="does not match its architecture"):
        bench.load_model(tmp_path / "bad.pt")


def test_state_hash_changes_with_any_weight():
    model = build_model("resnet18", 10, width=4)
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    h = state_hash(sd)
    sd["head.bias"][0] += 1e-6
    assert state_hash(sd) != h
