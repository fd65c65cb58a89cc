"""The training loop of method.md §3-4 for baseline and similarity-regularized models.

All randomness comes from explicit generators whose states are checkpointed every epoch, so a
run that is interrupted and resumed ends with bit-identical weights on CPU."""
from __future__ import annotations

import copy
import json
import math
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from bench.cards import ModelCard
from bench.config import canonical_json
from bench.data import load_dataset, to_float, train_val_split
from bench.models import build_model
from bench.models.resnet import TAPS
from bench.runtime import Progress, Silent, device_label, package_versions, resolve_device
from bench.targets import build_target
from bench.train.augment import crop_flip
from bench.train.checkpoint import (FORMAT_VERSION, MODEL_FORMAT, STATE_FORMAT, atomic_save,
                                    load_train_state, state_hash)
from bench.train.pairs import PairSampler
from bench.train.schedule import cyclic_step_lr
from bench.train.similarity import SimilarityHead, similarity_loss


def model_dir(workdir: Path, card: ModelCard, seed: int) -> Path:
    return Path(workdir) / "checkpoints" / f"{card.name}-{card.card_hash}" / f"seed{seed}"


def trained_path(workdir: Path, card: ModelCard, seed: int) -> Path | None:
    path = model_dir(workdir, card, seed) / "model.pt"
    return path if path.is_file() else None


@torch.no_grad()
def _validate(model, x, y, batch: int = 500) -> tuple[float, float]:
    if len(y) == 0:
        return math.nan, math.nan
    model.eval()
    loss, correct = 0.0, 0
    for s in range(0, len(y), batch):
        logits = model(x[s:s + batch]).float()
        loss += F.cross_entropy(logits, y[s:s + batch], reduction="sum").item()
        correct += (logits.argmax(1) == y[s:s + batch]).sum().item()
    return loss / len(y), correct / len(y)


def train(card: ModelCard, seed: int, workdir: Path, device: str = "auto", data_root: Path | None = None,
          progress: Progress | None = None, on_epoch_end: Callable[[int], None] | None = None) -> Path:
    """Train (or resume) one model; returns the exported best-validation checkpoint."""
    progress = progress or Silent()
    out = model_dir(workdir, card, seed)
    final = out / "model.pt"
    if final.is_file():
        return final
    dev = resolve_device(device)
    tr = card.trainer
    ds = load_dataset(card.dataset, data_root)
    train_idx, val_idx = train_val_split(len(ds.train_y), tr.val_fraction, tr.split_seed)
    if tr.train_images:
        pick = torch.randperm(len(train_idx), generator=torch.Generator().manual_seed(tr.split_seed + 1))
        train_idx = train_idx[pick[:tr.train_images]].sort().values
    x_tr, y_tr = to_float(ds.train_x[train_idx]).to(dev), ds.train_y[train_idx].to(dev)
    x_val, y_val = to_float(ds.train_x[val_idx]).to(dev), ds.train_y[val_idx].to(dev)

    torch.manual_seed(seed)  # weight initialisation only; everything else has its own generator
    model = build_model(card.arch, ds.num_classes, card.width).to(dev)
    reg = card.regularizer if card.regularizer_label != "none" else None  # alpha = 0 skips the pair path, as the follow-up code
    head = target = sampler = stimuli = None
    params = list(model.parameters())
    if reg is not None:
        target = build_target(reg.target, data_root)
        stimuli = target.images.to(dev)
        channels = [f.shape[1] for f in model.features(stimuli[:2])]
        head = SimilarityHead(channels, reg.ema_beta).to(dev)
        sampler = PairSampler(target.n, reg.pairs_per_step, seed)
        params += list(head.parameters())
    opt = torch.optim.SGD(params, lr=tr.lr, momentum=tr.momentum, weight_decay=tr.weight_decay)
    data_gen = torch.Generator().manual_seed(seed)

    st = {"epoch": 0, "best_val_loss": math.inf, "best": None, "history": [], "seconds": 0.0}
    state_file = out / "state.pt"
    if state_file.is_file():
        saved = load_train_state(state_file)
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        data_gen.set_state(saved["data_gen"])
        if head is not None:
            head.load_state_dict(saved["head"])
            sampler.load_state_dict(saved["pairs"])
        st = {k: saved[k] for k in st}
        progress.log(f"{card.name} seed {seed}: resuming after epoch {st['epoch']}")

    steps = len(y_tr) // tr.batch_size
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=dev.type == "cuda")
    progress.start(f"train {card.name} seed {seed}", (tr.epochs - st["epoch"]) * steps)
    for epoch in range(st["epoch"], tr.epochs):
        t0 = time.perf_counter()
        lr = cyclic_step_lr(epoch, tr.lr, tr.lr_decay, tr.lr_step_epochs, tr.lr_cycle_epochs)
        for group in opt.param_groups:
            group["lr"] = lr
        model.train()
        if head is not None:
            head.train()
        order = torch.randperm(len(y_tr), generator=data_gen).to(dev)
        sums = torch.zeros(3, device=dev)  # ce, sim, correct
        for b in range(steps):
            idx = order[b * tr.batch_size:(b + 1) * tr.batch_size]
            x, y = x_tr[idx], y_tr[idx]
            if tr.augment:
                x = crop_flip(x, data_gen)
            with autocast:
                logits = model(x).float()
                loss = ce = F.cross_entropy(logits, y)
                sim = torch.zeros((), device=dev)
                if head is not None:
                    i, j = sampler.next()
                    s_cnn = head(model.features(stimuli[i.to(dev)]), model.features(stimuli[j.to(dev)]))
                    sim = similarity_loss(s_cnn, target.lookup(i, j).to(dev), reg.loss_convention, reg.loss_eps)
                    loss = ce + reg.alpha * sim
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sums += torch.stack([ce.detach(), sim.detach(), (logits.argmax(1) == y).sum().float() / len(y)])
            progress.advance()
        val_loss, val_acc = _validate(model, x_val, y_val)
        st["seconds"] += time.perf_counter() - t0
        means = (sums / max(steps, 1)).tolist()
        record = {"epoch": epoch + 1, "lr": lr, "train_ce": means[0], "train_sim": means[1], "train_acc": means[2],
                  "val_loss": val_loss, "val_acc": val_acc,
                  "layer_weights": head.layer_weights.tolist() if head is not None else []}
        st["history"].append(record)
        if math.isnan(val_loss) or val_loss < st["best_val_loss"]:
            st["best_val_loss"] = val_loss if not math.isnan(val_loss) else math.inf
            st["best"] = {"epoch": epoch + 1, "model": copy.deepcopy({k: v.cpu() for k, v in model.state_dict().items()}),
                          "layer_weights": record["layer_weights"]}
        st["epoch"] = epoch + 1
        atomic_save({"format": STATE_FORMAT, "format_version": FORMAT_VERSION, "model": model.state_dict(),
                     "optimizer": opt.state_dict(), "data_gen": data_gen.get_state(),
                     "head": head.state_dict() if head is not None else {},
                     "pairs": sampler.state_dict() if sampler is not None else {}, **st}, state_file)
        progress.log(f"{card.name} seed {seed} epoch {epoch + 1}/{tr.epochs}: lr {lr:.4g} ce {means[0]:.3f} "
                     f"sim {means[1]:.3f} val_loss {val_loss:.3f} val_acc {val_acc:.3f}")
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1)

    best = st["best"]
    atomic_save({
        "format": MODEL_FORMAT, "format_version": FORMAT_VERSION, "model_name": card.name, "seed": seed,
        "card": canonical_json(card), "card_hash": card.card_hash, "arch": card.arch, "config": model.config,
        "regularizer": card.regularizer_label, "dataset": ds.name, "classes": list(ds.classes),
        "state_dict": best["model"], "state_hash": state_hash(best["model"]), "best_epoch": best["epoch"],
        "taps": list(TAPS), "layer_weights": best["layer_weights"], "history": st["history"],
        "target": json.dumps(target.description, sort_keys=True) if target is not None else "",
        "train_seconds": st["seconds"], "device": device_label(dev), "packages": package_versions(),
    }, final)
    return final
