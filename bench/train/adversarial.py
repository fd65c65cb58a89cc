"""The augmentations of the zoo's positive controls: models whose robustness is real, so that a
report can show that the battery sees robustness where it exists and raises no masking flag on
it (issue 27). Gaussian-noise augmentation, and PGD adversarial training (Madry et al. 2018).

PGD here is a few lines of torch rather than Foolbox: it runs inside every training step, draws
its random start from the trainer's own generator (so a resumed training is bit-identical), and
keeps the iterate in the [0,1] box by projection, never by clamping inside the forward pass (a
clamp passes no gradient at 0 and 1, so a black background could never brighten)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import ConfigDict, Field


@dataclass(frozen=True)
class AdversarialSpec:
    __pydantic_config__ = ConfigDict(extra="forbid")
    epsilon: Annotated[float, Field(gt=0, le=1)]  # L-inf radius at [0,1] scale
    norm: Literal["linf"] = "linf"
    steps: Annotated[int, Field(ge=1, le=1000)] = 3
    rel_stepsize: Annotated[float, Field(gt=0, le=10)] = 0.75  # step = rel_stepsize * epsilon


def noisy(x: torch.Tensor, sigma: float, gen: torch.Generator) -> torch.Tensor:
    """Gaussian noise at [0,1] scale from the trainer's generator, clamped to the box."""
    noise = torch.randn(x.shape, generator=gen).to(x.device, x.dtype)
    return (x + sigma * noise).clamp(0, 1)


def pgd_batch(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, spec: AdversarialSpec, gen) -> torch.Tensor:
    """L-inf PGD from a uniform random start, on the model in eval mode (the batch's own
    batch-norm statistics would make the attack see another network than the one evaluated)."""
    was_training = model.training
    model.eval()
    eps = spec.epsilon
    delta = ((2 * torch.rand(x.shape, generator=gen) - 1) * eps).to(x.device, x.dtype)
    delta = (x + delta).clamp(0, 1) - x
    for _ in range(spec.steps):
        delta.requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(model(x + delta), y), delta)
        delta = (delta.detach() + spec.rel_stepsize * eps * grad.sign()).clamp(-eps, eps)
        delta = (x + delta).clamp(0, 1) - x
    model.train(was_training)
    return (x + delta).detach()
