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


def _per_step_draws_training(card, seed: int, epochs: int) -> dict:
    """The training loop as it was before an epoch's randomness was drawn up front: every step
    drew its crops from the data generator and its pairs from the sampler, then looked up the
    target. Same model, optimiser and step function; only the order of the draws is the oracle's."""
    from bench.models import build_model
    from bench.train.augment import crop_flip, draw_crop_flip
    from bench.train.epoch import PairDraws
    from bench.train.regularizer import make_regularizer
    from bench.train.schedule import cyclic_step_lr
    from bench.train.trainer import train_step, training_data

    dev, tr = torch.device("cpu"), card.trainer
    data = training_data(card, None, dev)
    torch.manual_seed(seed)
    model = build_model(card.arch, data.dataset.num_classes, card.width, 1, card.input_scale)
    reg = make_regularizer(card, model, seed, dev)
    opt = torch.optim.SGD(
        list(model.parameters()) + reg.parameters(), lr=tr.lr, momentum=tr.momentum, weight_decay=tr.weight_decay
    )
    data_gen = torch.Generator().manual_seed(seed)
    off = torch.autocast("cuda", enabled=False)
    for epoch in range(epochs):
        for group in opt.param_groups:
            group["lr"] = cyclic_step_lr(epoch, tr.lr, tr.lr_decay, tr.lr_step_epochs, tr.lr_cycle_epochs)
        model.train()
        reg.train()
        order = torch.randperm(len(data.y), generator=data_gen)
        for b in range(len(data.y) // tr.batch_size):
            idx = order[b * tr.batch_size : (b + 1) * tr.batch_size]
            x, y = data.x[idx], data.y[idx]
            if tr.augment:
                x = crop_flip(x, *draw_crop_flip(data_gen, len(x)))
            i, j = reg.sampler.next()
            train_step(model, reg, opt, x, y, off, PairDraws(i, j, reg.target.lookup(i, j)))
    return model.state_dict()


def test_epoch_draws_made_up_front_train_bit_identically_to_per_step_draws(cards, tmp_path):
    """An epoch's order, crops, flips, pairs and target values are drawn before its first step
    (one upload per epoch on a GPU); on CPU the weights are those of drawing step by step."""
    card = load_model_card("tiny-shuffle")  # crops, flips and pairs
    assert card.trainer.augment and card.regularizer_label == "shuffle"

    def stop(epoch):
        if epoch == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(card, 0, tmp_path, "cpu", on_epoch_end=stop)
    ours = load_train_state(model_dir(tmp_path, card, 0, Numerics("cpu", "fp32")) / "state.pt")["model"]
    oracle = _per_step_draws_training(card, 0, epochs=2)
    assert ours.keys() == oracle.keys()
    assert all(torch.equal(ours[k], oracle[k]) for k in ours)
    changed = _per_step_draws_training(card, 1, epochs=2)  # the comparison can fail
    assert not all(torch.equal(ours[k], changed[k]) for k in ours)


def test_the_background_state_writer_saves_a_snapshot_and_reports_its_errors(tmp_path):
    from bench.io import BackgroundSaver

    w = torch.zeros(100_000)
    with BackgroundSaver() as saver:
        saver.save({"model": {"w": w}, "history": [{"epoch": 1}]}, tmp_path / "state.pt")
        w += 1  # the training goes on changing its tensors while the write is in flight
    saved = torch.load(tmp_path / "state.pt")
    assert torch.equal(saved["model"]["w"], torch.zeros(100_000)) and saved["history"] == [{"epoch": 1}]
    (tmp_path / "a-file").write_text("")
    with pytest.raises(OSError), BackgroundSaver() as saver:  # raised in the training's thread
        saver.save({"w": w}, tmp_path / "a-file" / "state.pt")
    assert not list(tmp_path.glob(".*.tmp"))


def test_gpu_speed_settings_stay_off_on_cpu_and_autotuning_off_under_the_deterministic_switch():
    from bench.train.speed import TrainingSpeed

    cpu = TrainingSpeed.for_device(torch.device("cpu"))
    assert cpu == TrainingSpeed() and cpu.optimizer_options() == {}
    assert cpu.memory_format == torch.contiguous_format  # CPU weights stay those of the published numbers
    cuda = TrainingSpeed.for_device(torch.device("cuda"))
    assert cuda.channels_last and cuda.cudnn_benchmark and cuda.optimizer_options() == {"fused": True}
    assert not TrainingSpeed.for_device(torch.device("cuda"), deterministic=True).cudnn_benchmark
    before = torch.backends.cudnn.benchmark
    with cuda.backends():
        assert torch.backends.cudnn.benchmark
    assert torch.backends.cudnn.benchmark == before  # evaluation's many shapes are not autotuned
