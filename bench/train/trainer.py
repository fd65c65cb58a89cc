"""The training loop of method.md §3-4 for baseline and similarity-regularized models.

All randomness comes from explicit generators whose states are checkpointed every epoch, so a
run that is interrupted and resumed ends with bit-identical weights on CPU."""

from __future__ import annotations

import copy
import functools
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from bench.cards import ModelCard
from bench.codestate import Clock
from bench.config import canonical_json
from bench.data import ImageDataset, load_dataset, to_float, train_val_split
from bench.errors import BenchError, CheckpointError
from bench.io import (
    BackgroundSaver,
    atomic_save,
    ensure_writable_folder,
    exclusive,
    quarantine,
    remove_stale_temporaries,
)
from bench.models import build_model
from bench.models.resnet import TAPS
from bench.numerics import Numerics, configure_device, device_label, package_versions, provenance, training_numerics
from bench.runtime import Progress, Silent, resolve_device
from bench.train.adversarial import noisy, pgd_batch
from bench.train.augment import crop_flip
from bench.train.checkpoint import (
    FORMAT_VERSION,
    MODEL_FORMAT,
    STATE_FIX,
    STATE_FORMAT,
    load_checkpoint,
    load_train_state,
    state_hash,
)
from bench.train.epoch import PairDraws, draw_epoch
from bench.train.regularizer import NoRegularizer, make_regularizer
from bench.train.schedule import cyclic_step_lr
from bench.train.speed import TrainingSpeed, training_compile_mode


def model_dir(workdir: Path, card: ModelCard, seed: int, numerics: Numerics) -> Path:
    """One folder per card recipe, seed and training numerics class: a CUDA (bf16) training and
    a CPU one are different models and never resume each other."""
    suffix = "" if numerics.label == "cpu-fp32" else f"-{numerics.label}"
    return Path(workdir) / "checkpoints" / f"{card.name}-{card.card_hash}" / f"seed{seed}{suffix}"


def trained_path(workdir: Path, card: ModelCard, seed: int, numerics: Numerics) -> Path | None:
    path = model_dir(workdir, card, seed, numerics) / "model.pt"
    return path if path.is_file() else None


@torch.no_grad()
def _validate(model, x, y, batch: int = 500) -> tuple[float, float]:
    if len(y) == 0:
        return math.nan, math.nan
    model.eval()
    loss, correct = 0.0, 0
    for s in range(0, len(y), batch):
        logits = model(x[s : s + batch]).float()
        loss += F.cross_entropy(logits, y[s : s + batch], reduction="sum").item()
        correct += (logits.argmax(1) == y[s : s + batch]).sum().item()
    return loss / len(y), correct / len(y)


def _note_other_numerics(out: Path, card: ModelCard, seed: int, numerics: Numerics, progress: Progress) -> None:
    others = [d.name for d in out.parent.glob(f"seed{seed}-*") if d != out and any(d.glob("*.pt"))]
    others += [f"seed{seed}"] if out.name != f"seed{seed}" and any(out.parent.glob(f"seed{seed}/*.pt")) else []
    if others and not (out / "state.pt").is_file():
        progress.log(
            f"{card.name} seed {seed}: {', '.join(others)} holds a training with other numerics; training "
            f"separately with {numerics.label} (models of different numerics never resume each other)"
        )


@dataclass
class TrainingData:
    dataset: ImageDataset
    x: torch.Tensor
    y: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor


def training_data(card: ModelCard, data_root: Path | None, dev: torch.device) -> TrainingData:
    """The card's training split (or its seeded subset) and validation split, on the device."""
    tr = card.trainer
    ds = load_dataset(card.dataset, data_root)
    train_idx, val_idx = train_val_split(len(ds.train_y), tr.val_fraction, tr.split_seed)
    if tr.train_images:
        pick = torch.randperm(len(train_idx), generator=torch.Generator().manual_seed(tr.split_seed + 1))
        train_idx = train_idx[pick[: tr.train_images]].sort().values
    return TrainingData(
        ds,
        to_float(ds.train_x[train_idx]).to(dev),
        ds.train_y[train_idx].to(dev),
        to_float(ds.train_x[val_idx]).to(dev),
        ds.train_y[val_idx].to(dev),
    )


def fresh_state() -> dict:
    # segments: one record per process that trained epochs of this model (code state, start and
    # end, wall and CPU seconds): a resumed training shows every code state it passed through
    return {"epoch": 0, "best_val_loss": math.inf, "best": None, "history": [], "seconds": 0.0, "segments": []}


OPTIONAL_STATE = {"segments"}  # absent from training states written before it existed


def save_state(
    saver: BackgroundSaver, path: Path, numerics: Numerics, model, opt, data_gen, reg: NoRegularizer, st: dict
) -> None:
    saver.save(
        {
            "format": STATE_FORMAT,
            "format_version": FORMAT_VERSION,
            "numerics": numerics.label,
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "data_gen": data_gen.get_state(),
            **reg.state_dict(),
            **st,
        },
        path,
    )


def resume_state(path: Path, numerics: Numerics, model, opt, data_gen, reg: NoRegularizer) -> dict | None:
    """The saved epoch's state restored into the objects, or None where there is none."""
    if not path.is_file():
        return None
    saved = load_train_state(path)
    missing = sorted({"model", "optimizer", "data_gen", "head", "pairs", *fresh_state()} - OPTIONAL_STATE - set(saved))
    if missing:
        raise CheckpointError(f"{path}: a training state without {missing}; {STATE_FIX}")
    if saved.get("numerics", "cpu-fp32") != numerics.label:
        raise BenchError(
            f"{path}: a {saved.get('numerics')} training state, but this run trains with "
            f"{numerics.label}; resume it with the device it started on, or delete the file to restart"
        )
    model.load_state_dict(saved["model"])
    opt.load_state_dict(saved["optimizer"])
    data_gen.set_state(saved["data_gen"])
    reg.load_state_dict(saved)
    return {k: saved.get(k, v) for k, v in fresh_state().items()}


def export(
    path: Path,
    card: ModelCard,
    seed: int,
    model,
    data: TrainingData,
    reg: NoRegularizer,
    st: dict,
    dev: torch.device,
    numerics: Numerics,
    compiled: str = "",
) -> None:
    """The self-contained best-validation checkpoint that bench.load_model reads."""
    best = st["best"]
    atomic_save(
        {
            "format": MODEL_FORMAT,
            "format_version": FORMAT_VERSION,
            "model_name": card.name,
            "seed": seed,
            "card": canonical_json(card),
            "card_hash": card.card_hash,
            "arch": card.arch,
            "config": model.config,
            "regularizer": card.regularizer_label,
            "dataset": data.dataset.name,
            "classes": list(data.dataset.classes),
            "state_dict": {k: v.contiguous() for k, v in best["model"].items()},  # channels_last on CUDA
            "state_hash": state_hash(best["model"]),
            "best_epoch": best["epoch"],
            "taps": list(TAPS),
            "layer_weights": best["layer_weights"],
            "history": st["history"],
            "target": json.dumps(reg.target.description, sort_keys=True) if reg.target is not None else "",
            "train_seconds": st["seconds"],
            "device": device_label(dev),
            "packages": package_versions(),
            "numerics": numerics.label,
            "provenance": json.dumps(
                {
                    **json.loads(provenance(dev, numerics, "bfloat16" if dev.type == "cuda" else "", compiled)),
                    "training": training_record(st["segments"]),
                },
                sort_keys=True,
            ),
        },
        path,
    )


def training_record(segments: list[dict]) -> dict:
    """When and from which code a model was trained: its first start, last end, wall and CPU
    seconds summed over the processes that trained it (pauses between them excluded), the code
    states they ran, and the segments themselves."""
    states = list({json.dumps(s["code"], sort_keys=True): s["code"] for s in segments}.values())
    return {
        "started_at": segments[0]["started_at"] if segments else None,
        "finished_at": segments[-1]["finished_at"] if segments else None,
        "wall_s": round(sum(s["wall_s"] for s in segments), 3),
        "cpu_s": round(sum(s["cpu_s"] for s in segments), 3),
        "code": states,
        "segments": segments,
    }


def train(
    card: ModelCard,
    seed: int,
    workdir: Path,
    device: str = "auto",
    data_root: Path | None = None,
    progress: Progress | None = None,
    on_epoch_end: Callable[[int], None] | None = None,
    deterministic: bool = False,
) -> Path:
    """Train (or resume) one model; returns the exported best-validation checkpoint. One process
    at a time trains a model: another one waits for it and then finds it trained."""
    progress = progress or Silent()
    dev = resolve_device(device)
    compile_mode = training_compile_mode(dev, deterministic)  # before anything is written
    numerics = training_numerics(dev)
    out = model_dir(workdir, card, seed, numerics)
    if _valid(out / "model.pt"):  # trained: nothing to write, a read-only workdir is fine
        return out / "model.pt"
    ensure_writable_folder(out, "the checkpoint folder", "pass --workdir to a writable place")
    waiting = lambda holder: progress.log(f"{card.name} seed {seed}: waiting for {holder}, which trains it")  # noqa: E731
    with exclusive(out / ".lock", waiting):
        speed = TrainingSpeed.for_device(dev, deterministic, compile_mode)
        return _train_locked(card, seed, out, dev, numerics, data_root, progress, on_epoch_end, deterministic, speed)


def _valid(path: Path) -> bool:
    try:
        return path.is_file() and load_checkpoint(path) is not None
    except CheckpointError:
        return False


def step_losses(model: nn.Module, reg: NoRegularizer, x, y, pairs: PairDraws | None, label_smoothing: float = 0.0):
    """(loss, ce, sim, accuracy) of one step: the part of the step that ``torch.compile`` may
    take whole (one graph, no breaks, checked in the tests). ``label_smoothing``: a generic
    regularizer (the matched-cost control of a clean-accuracy trade-off)."""
    logits = model(x).float()
    ce = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
    term, sim = reg.loss(model, pairs)
    return ce + term, ce, sim, (logits.argmax(1) == y).sum().float() / len(y)


def train_step(
    model: nn.Module, reg: NoRegularizer, opt, x, y, autocast, pairs: PairDraws | None, losses=step_losses
) -> torch.Tensor:
    """One optimisation step (classification + the regularizer's term on the step's pairs);
    returns (ce, sim, accuracy) detached. ``losses`` is ``step_losses`` or its compiled form.
    The trainer and ``bench perf`` both time this."""
    with autocast:
        loss, ce, sim, acc = losses(model, reg, x, y, pairs)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return torch.stack([ce.detach(), sim.detach(), acc.detach()])


@dataclass
class Run:
    """One training's objects, passed between the sections of the loop (airbench-style): setup,
    resume, epoch, keep-best, export."""

    card: ModelCard
    seed: int
    out: Path
    dev: torch.device
    numerics: Numerics
    progress: Progress
    speed: TrainingSpeed
    data: TrainingData
    model: nn.Module
    reg: NoRegularizer
    opt: torch.optim.Optimizer
    data_gen: torch.Generator
    st: dict | None = None

    @property
    def state_file(self) -> Path:
        return self.out / "state.pt"

    def say(self, message: str) -> None:
        self.progress.log(f"{self.card.name} seed {self.seed}: {message}")


def _train_locked(
    card: ModelCard,
    seed: int,
    out: Path,
    dev: torch.device,
    numerics: Numerics,
    data_root: Path | None,
    progress: Progress,
    on_epoch_end,
    deterministic: bool,
    speed: TrainingSpeed,
) -> Path:
    final = out / "model.pt"
    if _exported(final, card, seed, progress):
        return final
    remove_stale_temporaries(out)
    configure_device(dev, deterministic)
    _note_other_numerics(out, card, seed, numerics, progress)
    run = _setup(card, seed, out, dev, numerics, data_root, progress, speed)
    run.st = _resume(run)
    tr, steps = card.trainer, len(run.data.y) // card.trainer.batch_size
    clock, first_epoch = Clock(), run.st["epoch"] + 1
    smoothing = tr.label_smoothing
    losses = speed.compiled(step_losses if not smoothing else functools.partial(step_losses, label_smoothing=smoothing))
    progress.start(f"train {card.name} seed {seed}", (tr.epochs - run.st["epoch"]) * steps)
    with BackgroundSaver() as saver, speed.backends():
        for epoch in range(run.st["epoch"], tr.epochs):
            t0 = time.perf_counter()
            record = _epoch(run, epoch, steps, losses)
            run.st["seconds"] += time.perf_counter() - t0
            run.st["history"].append(record)
            _keep_best(run, record)
            run.st["epoch"] = epoch + 1
            if epoch + 1 > first_epoch:  # this process's segment so far, replaced by its longer self
                run.st["segments"].pop()
            run.st["segments"].append({**clock.record(), "epochs": [first_epoch, epoch + 1]})
            save_state(saver, run.state_file, numerics, run.model, run.opt, run.data_gen, run.reg, run.st)
            progress.log(
                f"{card.name} seed {seed} epoch {epoch + 1}/{tr.epochs}: lr {record['lr']:.4g} ce {record['train_ce']:.3f} "
                f"sim {record['train_sim']:.3f} val_loss {record['val_loss']:.3f} val_acc {record['val_acc']:.3f}"
            )
            if on_epoch_end is not None:
                on_epoch_end(epoch + 1)
    export(final, card, seed, run.model, run.data, run.reg, run.st, dev, numerics, speed.compile)
    return final


def _exported(final: Path, card: ModelCard, seed: int, progress: Progress) -> bool:
    """Whether the model is exported already; a damaged export is set aside, to be exported again
    from the training state."""
    if not final.is_file():
        return False
    try:
        load_checkpoint(final)
        return True
    except CheckpointError as exc:
        progress.log(
            f"{card.name} seed {seed}: {exc}; moved to {quarantine(final).name}, exporting it again "
            "from the training state"
        )
        return False


def _setup(card, seed, out, dev, numerics, data_root, progress, speed: TrainingSpeed) -> Run:
    """Data, network (initialised from the training seed), regularizer and optimizer."""
    tr, data = card.trainer, training_data(card, data_root, dev)
    if len(data.y) < tr.batch_size:
        raise BenchError(
            f"{card.path}: key 'trainer.batch_size' ({tr.batch_size}) exceeds the {len(data.y)} training "
            "images, so no step would be taken; lower batch_size or raise train_images"
        )
    torch.manual_seed(seed)  # weight initialisation only; everything else has its own generator
    model = build_model(
        card.arch, data.dataset.num_classes, card.width, data.dataset.image_shape[0], card.input_scale
    ).to(dev)
    if speed.channels_last:
        model = model.to(memory_format=torch.channels_last)
    reg = make_regularizer(card, model, seed, dev, data_root, speed.memory_format)
    opt = torch.optim.SGD(
        list(model.parameters()) + reg.parameters(),
        lr=tr.lr,
        momentum=tr.momentum,
        weight_decay=tr.weight_decay,
        **speed.optimizer_options(),
    )
    data_gen = torch.Generator().manual_seed(seed)
    return Run(card, seed, out, dev, numerics, progress, speed, data, model, reg, opt, data_gen)


def _resume(run: Run) -> dict:
    """The training state after the last finished epoch (restored into the run's objects), or a
    fresh one; a damaged state file is set aside and training starts again."""
    try:
        st = resume_state(run.state_file, run.numerics, run.model, run.opt, run.data_gen, run.reg)
    except CheckpointError as exc:  # a damaged state: the objects are untouched, start again
        run.say(f"{exc}; moved to {quarantine(run.state_file).name}, training again from the first epoch")
        st = None
    if st is not None:
        run.say(f"resuming after epoch {st['epoch']}")
    return st or fresh_state()


def _epoch(run: Run, epoch: int, steps: int, losses) -> dict:
    """One epoch of steps at its learning rate, then the validation loss: the epoch's record."""
    tr, dev, data = run.card.trainer, run.dev, run.data
    lr = cyclic_step_lr(epoch, tr.lr, tr.lr_decay, tr.lr_step_epochs, tr.lr_cycle_epochs)
    for group in run.opt.param_groups:
        group["lr"] = lr
    run.model.train()
    run.reg.train()
    draws = draw_epoch(len(data.y), steps, tr.batch_size, tr.augment, run.data_gen, run.reg, dev)
    sums = torch.zeros(3, device=dev)  # ce, sim, correct
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=dev.type == "cuda")
    for b in range(steps):
        idx, crop, pairs = draws.step(b, tr.batch_size)
        x, y = data.x[idx], data.y[idx]
        if crop is not None:
            x = crop_flip(x, *crop)
        if tr.noise_sigma > 0:
            x = noisy(x, tr.noise_sigma, run.data_gen)
        if tr.adversarial is not None:
            x = pgd_batch(run.model, x, y, tr.adversarial, run.data_gen)
        x = x.contiguous(memory_format=run.speed.memory_format)
        sums += train_step(run.model, run.reg, run.opt, x, y, autocast, pairs, losses)
        run.progress.advance()
    val_loss, val_acc = _validate(run.model, data.x_val, data.y_val)
    means = (sums / max(steps, 1)).tolist()
    return {
        "epoch": epoch + 1,
        "lr": lr,
        "train_ce": means[0],
        "train_sim": means[1],
        "train_acc": means[2],
        "val_loss": val_loss,
        "val_acc": val_acc,
        "layer_weights": run.reg.layer_weights,
    }


def _keep_best(run: Run, record: dict) -> None:
    """The best-validation weights so far (NaN validation, an empty split: the latest)."""
    st, val_loss = run.st, record["val_loss"]
    if math.isnan(val_loss) or val_loss < st["best_val_loss"]:
        st["best_val_loss"] = val_loss if not math.isnan(val_loss) else math.inf
        st["best"] = {
            "epoch": record["epoch"],
            "model": copy.deepcopy({k: v.cpu() for k, v in run.model.state_dict().items()}),
            "layer_weights": record["layer_weights"],
        }
