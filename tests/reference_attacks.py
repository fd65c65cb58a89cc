"""An independent minimal-L2 attack, written from the papers and sharing no code with Foolbox,
to audit the ``minimal`` evaluation (issue 27): if it finds a smaller perturbation, or any
adversarial where the project found none, the project's attacks are too weak.

DDN (Rony et al., CVPR 2019: decoupled direction and norm, on the cross-entropy) and FMN (Pintor
et al., NeurIPS 2021: fast minimum-norm, on the logit margin), each at several step sizes (the
landscape has several local minima: a large first step can settle on a far one), then a line
search towards the clean image along each found perturbation. Every adversarial is
verified in fp32 inside [0,1] by the model's own prediction before it counts."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def ddn(model, x, y, steps: int, init_norm: float = 1.0, max_step: float = 1.0, gamma: float = 0.05, start=None):
    """One DDN run: a step along the normalised loss gradient, then a projection onto the sphere
    of radius eps, which shrinks by (1 - gamma) while adversarial and grows by (1 + gamma) while
    not; the step size anneals from max_step to max_step / 100 (cosine). Returns the best verified perturbation
    per image (zeros and inf where none)."""
    n = len(x)
    delta = torch.zeros_like(x) if start is None else start.clone()
    eps = torch.full((n,), init_norm)
    best = torch.full((n,), math.inf)
    best_delta = torch.zeros_like(x)
    for k in range(steps):
        alpha = max_step * (0.01 + 0.5 * (1 - 0.01) * (1 + math.cos(math.pi * k / steps)))
        delta.requires_grad_(True)
        logits = model(
            x + delta
        )  # delta keeps x + delta in the box; no clamp, so the gradient keeps its out-of-box part
        loss = F.cross_entropy(logits, y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, delta)
        delta = delta.detach()
        with torch.no_grad():
            adv = logits.argmax(1) != y
            norm = delta.flatten(1).norm(dim=1)
            better = adv & (norm < best)
            best[better], best_delta[better] = norm[better], delta[better]
            g = grad / grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
            delta = delta + alpha * g
            eps = torch.where(adv, (1 - gamma) * eps, (1 + gamma) * eps)
            delta = delta * (eps / delta.flatten(1).norm(dim=1).clamp_min(1e-12)).view(-1, 1, 1, 1)
            delta = (x + delta).clamp(0, 1) - x
    with torch.no_grad():  # the last iterate too
        adv = model((x + delta).clamp(0, 1)).argmax(1) != y
        norm = delta.flatten(1).norm(dim=1)
        better = adv & (norm < best)
        best[better], best_delta[better] = norm[better], delta[better]
    return best_delta, best


def fmn(model, x, y, steps: int, max_step: float = 1.0, gamma0: float = 0.05):
    """One FMN-L2 run: descend the margin (true logit minus the best other) with a normalised
    step, inside an L2 ball whose radius shrinks while adversarial, grows while not, and jumps to
    the first-order boundary estimate until a first adversarial is found."""
    n = len(x)
    delta = torch.zeros_like(x)
    eps = torch.full((n,), math.inf)
    best = torch.full((n,), math.inf)
    best_delta = torch.zeros_like(x)
    for k in range(steps):
        cos = 0.5 * (1 + math.cos(math.pi * k / steps))
        alpha, gamma = max_step * (0.01 + 0.99 * cos), gamma0 * cos
        delta.requires_grad_(True)
        logits = model(
            x + delta
        )  # delta keeps x + delta in the box; no clamp, so the gradient keeps its out-of-box part
        true = logits.gather(1, y[:, None])[:, 0]
        other = logits.scatter(1, y[:, None], -math.inf).amax(1)
        margin = true - other
        (grad,) = torch.autograd.grad(margin.sum(), delta)
        delta = delta.detach()
        with torch.no_grad():
            adv, norm = margin < 0, delta.flatten(1).norm(dim=1)
            better = adv & (norm < best)
            best[better], best_delta[better] = norm[better], delta[better]
            gnorm = grad.flatten(1).norm(dim=1).clamp_min(1e-12)
            grown = torch.where(torch.isinf(best), norm + margin.detach().abs() / gnorm, eps * (1 + gamma))
            eps = torch.where(adv, torch.minimum(eps * (1 - gamma), norm), grown)
            delta = delta - alpha * (grad / gnorm.view(-1, 1, 1, 1))
            scale = (eps / delta.flatten(1).norm(dim=1).clamp_min(1e-12)).clamp(max=1)
            delta = (x + delta * scale.view(-1, 1, 1, 1)).clamp(0, 1) - x
    with torch.no_grad():
        adv = model((x + delta).clamp(0, 1)).argmax(1) != y
        norm = delta.flatten(1).norm(dim=1)
        better = adv & (norm < best)
        best[better], best_delta[better] = norm[better], delta[better]
    return best_delta, best


@torch.no_grad()
def line_search(model, x, y, delta, found, steps: int = 20):
    """Per image, the smallest scale t in [0, 1] at which x + t * delta is still adversarial."""
    lo, hi = torch.zeros(len(x)), torch.ones(len(x))
    for _ in range(steps):
        mid = (lo + hi) / 2
        adv = model((x + mid.view(-1, 1, 1, 1) * delta).clamp(0, 1)).argmax(1) != y
        hi, lo = torch.where(adv, mid, hi), torch.where(adv, lo, mid)
    return torch.where(found.view(-1, 1, 1, 1), hi.view(-1, 1, 1, 1) * delta, delta)


RUNS = (("ddn", 1.0), ("ddn", 0.1), ("fmn", 1.0), ("fmn", 0.1), ("fmn", 0.03))  # (attack, largest step)


def minimal_l2(model, x, y, steps: int = 500) -> torch.Tensor:
    """Per image, the smallest verified L2 distance found (0 for clean errors, inf if none)."""
    model.eval()
    with torch.no_grad():
        clean_wrong = model(x).argmax(1) != y
    best = torch.full((len(x),), math.inf)
    for attack, step in RUNS:
        if attack == "ddn":
            delta, norm = ddn(model, x, y, steps, init_norm=step, max_step=step)
        else:
            delta, norm = fmn(model, x, y, steps, max_step=step)
        found = torch.isfinite(norm)
        delta = line_search(model, x, y, delta, found)
        with torch.no_grad():
            adv = (x + delta).clamp(0, 1)
            ok = found & (model(adv).argmax(1) != y)  # verified in fp32 inside the box
            d = (adv - x).flatten(1).norm(dim=1)
        best = torch.where(ok & (d < best), d, best)
    return torch.where(clean_wrong, torch.zeros_like(best), best)
