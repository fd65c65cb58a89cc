import pytest
import torch

from bench.cards import load_model_card
from bench.numerics import Numerics
from bench.train.checkpoint import load_checkpoint, load_train_state
from bench.train.trainer import model_dir, train


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("name", ["tiny-none", "tiny-pixel", "tiny-shuffle"])
def test_same_command_gives_bit_identical_weights(cards, tmp_path, name):
    card = load_model_card(name)
    a = load_checkpoint(train(card, 0, tmp_path / "a", "cpu"))
    b = load_checkpoint(train(card, 0, tmp_path / "b", "cpu"))
    assert a["state_hash"] == b["state_hash"]
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    assert a["history"] == b["history"]
    c = load_checkpoint(train(card, 1, tmp_path / "a", "cpu"))
    assert c["state_hash"] != a["state_hash"]  # the seed matters


def test_regularized_training_records_layer_weights_and_history(cards, tmp_path):
    ckpt = load_checkpoint(train(load_model_card("tiny-pixel"), 0, tmp_path, "cpu"))
    w = ckpt["layer_weights"]
    assert len(w) == 5 and sum(w) == pytest.approx(1.0) and w != [0.2] * 5  # theta moved from 0
    assert [h["epoch"] for h in ckpt["history"]] == [1, 2, 3]
    assert [h["lr"] for h in ckpt["history"]] == pytest.approx([0.1, 0.1, 0.03])
    assert all(h["train_sim"] > 0 for h in ckpt["history"])
    assert 1 <= ckpt["best_epoch"] <= 3
    best = min(ckpt["history"], key=lambda h: h["val_loss"])
    assert ckpt["best_epoch"] == best["epoch"]  # the best-validation checkpoint is the one kept
    assert ckpt["regularizer"] == "pixel-threshold" and "pixel-threshold" in ckpt["target"]


@pytest.mark.parametrize("name", ["tiny-none", "tiny-shuffle"])
def test_interrupted_training_resumes_to_the_same_weights(cards, tmp_path, name):
    card = load_model_card(name)
    straight = load_checkpoint(train(card, 0, tmp_path / "straight", "cpu"))

    def stop_after_first(epoch):
        if epoch == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(card, 0, tmp_path / "resumed", "cpu", on_epoch_end=stop_after_first)
    folder = model_dir(tmp_path / "resumed", card, 0, Numerics("cpu", "fp32"))
    assert not (folder / "model.pt").exists()
    assert load_train_state(folder / "state.pt")["epoch"] == 1
    resumed = load_checkpoint(train(card, 0, tmp_path / "resumed", "cpu"))
    assert resumed["state_hash"] == straight["state_hash"]
    assert resumed["history"] == straight["history"]
    assert not list(folder.glob(".*.tmp"))


def test_trained_model_is_not_retrained(cards, tmp_path):
    card = load_model_card("tiny-none")
    path = train(card, 0, tmp_path, "cpu")
    mtime = path.stat().st_mtime_ns
    assert train(card, 0, tmp_path, "cpu") == path and path.stat().st_mtime_ns == mtime
