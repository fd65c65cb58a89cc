"""Pictures of what the models saw, made at report time from the checkpoints a plan names (the
store keeps numbers, not images): for each model's first training seed, a few evaluation images,
their minimal L2 adversarials (Foolbox FMN, verified to change the prediction) and the
perturbations, and the first image under each noise level the suite evaluates, drawn with the
evaluation's own per-image generator (exactly what every model saw). Skipped without checkpoint
files (a report rendered from a folder) or for outside models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from bench.plan import Plan, perturbation_seed, suite_evaluations
from bench.report.plots import _plt, _save

IMAGES = 3  # per model
NAMES = ("gallery.png", "noise_examples.png")


def _show(ax, img: torch.Tensor, title: str = "", diverging: bool = False) -> None:
    a = img.detach().cpu().float().numpy()
    a = a[0] if a.shape[0] == 1 else np.transpose(a, (1, 2, 0))
    if diverging:
        m = float(np.abs(a).max()) or 1.0
        ax.imshow(a if a.ndim == 2 else a.mean(axis=2), cmap="RdBu_r", vmin=-m, vmax=m)
    else:
        ax.imshow(a, cmap="gray" if a.ndim == 2 else None, vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=6)


def adversarial_gallery(plan: Plan, path: Path, steps: int = 50) -> bool:
    from bench.compute import evaluated_model
    from bench.evals.attacks import distances, foolbox
    from bench.evals.base import EvalContext, forked_rng

    run = plan.run
    shown = [
        (c, plan.checkpoints[(c.name, s)][0])
        for c in run.suite.cards
        if not c.external
        for s in run.suite.seeds[:1]
        if plan.checkpoints.get((c.name, s), (None,))[0] is not None
    ]
    if not shown or not plan.subsets:
        return False
    sub = plan.subsets[max(plan.subsets)]
    x, y = sub.x[:IMAGES].to(run.dev), sub.y[:IMAGES].to(run.dev)
    plt = _plt()
    fig, axes = plt.subplots(len(shown), 3 * IMAGES, figsize=(1.15 * 3 * IMAGES, 1.35 * len(shown)), squeeze=False)
    fb = foolbox()
    for row, (card, ckpt) in enumerate(shown):
        model = evaluated_model(card, ckpt, run.dev)
        with forked_rng(EvalContext(run.dev, 0), perturbation_seed(run.suite)):
            adv = fb.attacks.L2FMNAttack(steps=steps, max_stepsize=0.1)(
                fb.PyTorchModel(model, bounds=(0, 1), device=run.dev), x, y, epsilons=None
            )[0]
        with torch.no_grad():
            clean, fooled = model(x).argmax(1), model(adv).argmax(1)
        dist = distances(x, adv, "l2")
        for k in range(IMAGES):
            ok = bool(clean[k] == y[k])
            found = ok and bool(fooled[k] != y[k])
            _show(
                axes[row, 3 * k],
                x[k],
                f"{card.name}\nlabel {int(y[k])}, pred {int(clean[k])}"
                if k == 0
                else f"label {int(y[k])}, pred {int(clean[k])}",
            )
            _show(
                axes[row, 3 * k + 1],
                adv[k],
                f"adv → {int(fooled[k])}, L2 {float(dist[k]):.2f}"
                if found
                else ("clean error" if not ok else "none found"),
            )
            _show(axes[row, 3 * k + 2], adv[k] - x[k], "perturbation", diverging=True)
    fig.suptitle(
        f"{run.suite.name}: minimal L2 adversarials (Foolbox FMN, {steps} steps), first seed of each model, "
        f"first {IMAGES} evaluation images",
        fontsize=8,
    )
    _save(fig, path)
    return True


def noise_strip(plan: Plan, path: Path) -> bool:
    from bench.evals.base import EvalContext
    from bench.evals.image_rng import ImageRNG
    from bench.evals.noise import Noise, add_noise

    run = plan.run
    specs = [s for s in suite_evaluations(run.suite) if s.kind == "noise"]
    if not specs or not plan.subsets:
        return False
    sub = plan.subsets[max(plan.subsets)]
    ctx = EvalContext(run.dev, perturbation_seed(run.suite), indices=sub.indices[:1])
    widest = max(len(s.params.levels) for s in specs)
    plt = _plt()
    fig, axes = plt.subplots(len(specs), widest, figsize=(1.1 * widest, 1.3 * len(specs)), squeeze=False)
    for row, spec in enumerate(specs):
        ev = Noise(spec.params)
        for k, level in enumerate(spec.params.levels):
            rng = ImageRNG.for_images(ev.point_seed(ctx, level), ctx.image_ids(sub.x[:1]))
            _show(
                axes[row, k], add_noise(sub.x[:1], spec.params.noise, level, rng)[0], f"{spec.params.noise} {level:g}"
            )
        for k in range(len(spec.params.levels), widest):
            axes[row, k].axis("off")
    fig.suptitle(f"{run.suite.name}: the first evaluation image at each noise level, as every model saw it", fontsize=8)
    _save(fig, path)
    return True


def pictures(plan: Plan, folder: Path) -> dict[str, Path]:
    """The pictures that need images or networks: written into ``folder``, named as figures."""
    out = {}
    for name, draw in zip(NAMES, (adversarial_gallery, noise_strip)):
        if draw(plan, folder / name):
            out[name] = folder / name
    return out
