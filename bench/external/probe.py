"""Checks an outside model against the dataset it is about to be evaluated on, before anything
is computed or stored: every mismatch is one line naming the card and the fix."""

from __future__ import annotations

import torch
from torch import nn

from bench.data import ImageDataset
from bench.errors import CardError
from bench.external.card import ExternalCard
from bench.io import short_reason


def check_contract(card: ExternalCard, ds: ImageDataset) -> None:
    c, h, w = ds.image_shape
    where = card.path
    if card.dataset and card.dataset != ds.name:
        raise CardError(
            f"{where}: key 'dataset' is {card.dataset!r} but the suite evaluates {ds.name!r}; fix or drop 'dataset'"
        )
    if card.input.channels != c:
        raise CardError(
            f"{where}: key 'input.channels' is {card.input.channels} but {ds.name} images have {c}; "
            f"evaluate it on a {card.input.channels}-channel dataset or fix 'input.channels'"
        )
    if tuple(card.input.size) != (h, w):
        raise CardError(
            f"{where}: key 'input.size' is {list(card.input.size)} but {ds.name} images are {h} x {w}; "
            "evaluate it on a dataset of its size or fix 'input.size'"
        )


# logits of the same image may differ by float rounding between batch sizes (another BLAS
# kernel), never by more: a real dependence (batch statistics, random layers) is far larger
STABLE_RTOL, STABLE_ATOL = 1e-3, 1e-4


def check_outputs(card: ExternalCard, model: nn.Module, x: torch.Tensor, num_classes: int, batch_size: int) -> None:
    """A forward pass over ``x`` (the evaluation images, [0,1]): float logits of shape
    (N, classes), finite everywhere. A batch of 3 first, so a program exported with a fixed batch
    size fails here rather than inside an attack. Then the same 3 images again, alone and
    inside the first full batch: a model whose logits change between calls or with the batch
    (random layers, batch statistics) makes every attack and accuracy irreproducible."""
    where = card.path
    dev = next((b.device for b in model.buffers()), torch.device("cpu"))
    batches = [x[:3], *x.split(batch_size)]
    outputs = []
    with torch.no_grad():
        for batch in batches:
            try:
                out = model(batch.to(dev))
            except Exception as exc:
                raise CardError(
                    f"{where}: the model fails on a {' x '.join(map(str, batch.shape))} batch in [0,1] "
                    f"({short_reason(exc)}); fix its input contract (or export it with a dynamic batch dimension)"
                ) from None
            if not isinstance(out, torch.Tensor):
                raise CardError(
                    f"{where}: the model returns {type(out).__name__}, not a tensor of logits; wrap it to return logits"
                )
            if tuple(out.shape) != (len(batch), num_classes):
                raise CardError(
                    f"{where}: the model returns shape {list(out.shape)} for {len(batch)} images; the dataset has "
                    f"{num_classes} classes, so it must return [{len(batch)}, {num_classes}] logits"
                )
            if not out.dtype.is_floating_point:
                raise CardError(f"{where}: the model returns {out.dtype} logits; it must return floating-point logits")
            if not torch.isfinite(out).all():
                raise CardError(
                    f"{where}: the model returns non-finite logits (NaN or inf) on clean test images; "
                    "check its weights and input contract (range, mean/std)"
                )
            outputs.append(out)
        again = model(x[:3].to(dev))
    check_stable(where, outputs[0], again, outputs[1][:3], len(batches[1]))


def check_stable(where, first: torch.Tensor, again: torch.Tensor, in_batch: torch.Tensor, batch: int) -> None:
    """The same images twice, and inside a batch of ``batch``, give the same logits (to rounding)."""
    for other, what, fix in (
        (again, "twice in a row", "make it deterministic at evaluation (no dropout or noise layers in eval mode)"),
        (
            in_batch,
            f"alone (3 images) and in a batch of {batch}",
            "make each image's logits independent of its batch (batch-norm statistics frozen: eval mode)",
        ),
    ):
        if not torch.allclose(first, other.to(first.device), rtol=STABLE_RTOL, atol=STABLE_ATOL):
            gap = float((first - other.to(first.device)).abs().max())
            raise CardError(
                f"{where}: the model gives different logits for the same images {what} (up to {gap:.3g} apart); "
                f"attacks and accuracies would not be reproducible: {fix}"
            )
