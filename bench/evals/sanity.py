"""Sanity checks on one evaluation's own numbers, as readable flags stored beside the result.
Pure functions: each returns a list of messages (empty when nothing is wrong)."""

from __future__ import annotations

import math
from collections.abc import Sequence

TOL = 1e-9


def accuracy_curve_flags(
    name: str, points: Sequence[tuple[float, float]], clean: float, monotone: bool = True
) -> list[str]:
    """points: (epsilon or level, accuracy) in grid order. Accuracy at 0 must equal clean
    accuracy; robust accuracy must not exceed clean accuracy nor rise with epsilon."""
    flags = []
    pts = sorted(points)
    if any(math.isnan(a) for _, a in pts):
        flags.append(f"{name}: NaN accuracy at {[p for p, a in pts if math.isnan(a)]}")
    for p, a in pts:
        if p == 0 and abs(a - clean) > TOL:
            flags.append(f"{name}: accuracy at 0 is {a:.4f}, clean accuracy is {clean:.4f}")
    if monotone:
        rises = [(p0, a0, p1, a1) for (p0, a0), (p1, a1) in zip(pts, pts[1:]) if a1 > a0 + TOL]
        if rises:
            p0, a0, p1, a1 = rises[0]
            flags.append(f"{name}: robust accuracy rises with epsilon ({a0:.4f} at {p0:g} -> {a1:.4f} at {p1:g})")
        above = [p for p, a in pts if a > clean + TOL]
        if above:
            flags.append(f"{name}: robust accuracy above clean accuracy at {above}")
    return flags


def near_zero_flag(name: str, epsilon: float, accuracy: float, limit: float) -> list[str]:
    """At an epsilon that allows turning any image into any other, accuracy must reach ~0;
    if it does not, the attack is failing (gradient masking or a broken attack)."""
    if accuracy > limit:
        return [
            f"{name}: accuracy {accuracy:.4f} at the sanity epsilon {epsilon:g} (expected <= {limit:g}): "
            "the attack fails where it cannot fail; suspect gradient masking"
        ]
    return []


def not_found_flag(name: str, found: float) -> list[str]:
    if found < 1:
        return [
            f"{name}: no adversarial found for {(1 - found) * 100:.1f}% of images (counted as inf; the median is "
            "an upper bound)"
        ]
    return []


def black_box_flag(name: str, fraction: float, factor: float, limit: float) -> list[str]:
    """Black-box attacks should not find much smaller perturbations than white-box ones."""
    if fraction > limit:
        return [
            f"{name}: black-box attacks beat the best white-box attack by more than {1 / factor:g}x on "
            f"{fraction * 100:.1f}% of images (limit {limit * 100:g}%): suspect gradient masking"
        ]
    return []


def nan_flag(name: str, values) -> list[str]:
    n = int(sum(1 for v in values if isinstance(v, float) and math.isnan(v)))
    return [f"{name}: {n} NaN values"] if n else []


def gradient_flags(name: str, zero: float, bad: float) -> list[str]:
    """Gradient attacks see nothing where the input gradient is zero or not finite: a model
    with such images is masking gradients (quantization, saturation, a non-differentiable step)."""
    flags = []
    if zero > 0:
        flags.append(
            f"{name}: the input gradient is exactly zero on {zero * 100:.1f}% of correctly classified images: "
            "gradient attacks cannot move them; suspect gradient masking"
        )
    if bad > 0:
        flags.append(
            f"{name}: the input gradient is NaN or infinite on {bad * 100:.1f}% of correctly classified images"
        )
    return flags


def convergence_flag(name: str, fraction: float, at_fraction: float, full: float, tolerance: float) -> list[str]:
    """A median that still falls between a fraction of the budget and the full budget has not
    settled: more steps would likely lower it further."""
    if math.isinf(at_fraction) and math.isfinite(full):
        return [
            f"{name}: at {fraction:g} of the attack budget the median was not reached: the ensemble has not converged"
        ]
    if math.isfinite(full) and full > 0 and (at_fraction - full) / full > tolerance:
        return [
            f"{name}: the median falls by {(at_fraction - full) / full * 100:.1f}% from {fraction:g} of the attack "
            f"budget to all of it (more than {tolerance * 100:g}%): not converged; add steps or attacks"
        ]
    return []


def pgd_convergence_flag(
    name: str, fraction: float, short: Sequence[tuple[float, float]], full: dict[float, float], tolerance: float
) -> list[str]:
    """Robust accuracy that still falls by more than the tolerance between a fraction of the steps
    and all of them: the attack was still gaining, so more steps would likely lower it further."""
    gaining = [(eps, acc, full[eps]) for eps, acc in short if eps in full and acc - full[eps] > tolerance]
    if not gaining:
        return []
    eps, acc, end = max(gaining, key=lambda g: g[1] - g[2])
    return [
        f"{name}: robust accuracy falls from {acc:.4f} at {fraction:g} of the steps to {end:.4f} at all of them "
        f"(epsilon {eps:g}; more than {tolerance * 100:g} points): not converged; add steps"
    ]
