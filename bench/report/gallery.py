"""Pictures of what the models saw and learned, made at report time from the checkpoints a plan
names (the store keeps numbers, not images): for each model's first training seed, a few
evaluation images, their minimal L2 adversarials (Foolbox FMN, verified to change the prediction)
and the perturbations; the first evaluation image under each noise level and each corruption and
severity the suite evaluates, drawn with the evaluation's own per-image generator (exactly what
every model saw); and the similarity matrices behind the brain-similarity column: the targets
(the shuffled control's included) and each model's, on held-out stimuli. Skipped without
checkpoint files (a report rendered from a folder) or for outside models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from bench.plan import Plan, perturbation_seed, suite_evaluations
from bench.report.plots import _plt, _save

IMAGES = 3  # per model
NAMES = ("gallery.png", "noise_examples.png", "corruption_examples.png", "similarity_matrices.png")


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


def corruption_strip(plan: Plan, path: Path) -> bool:
    run = plan.run
    specs = [s for s in suite_evaluations(run.suite) if s.kind == "corruptions"]
    if not specs or not plan.subsets:
        return False
    from bench.evals.base import EvalContext
    from bench.evals.corruptions import Corruptions, find_files  # torchvision: seconds

    p = specs[0].params
    sub = plan.subsets[max(plan.subsets)]
    x, y, ids = sub.x[:1], sub.y[:1], sub.indices[:1]
    ctx = EvalContext(run.dev, perturbation_seed(run.suite), indices=ids)
    ev = Corruptions(p)
    folder = None if p.source == "generate" else find_files(run.suite.dataset, run.data_root)
    plt = _plt()
    cols = 1 + len(p.severities)
    fig, axes = plt.subplots(len(p.corruptions), cols, figsize=(1.0 * cols, 1.1 * len(p.corruptions)), squeeze=False)
    for row, name in enumerate(p.corruptions):
        _show(axes[row, 0], x[0], name.replace("_", " "))
        for k, severity in enumerate(p.severities):
            _show(axes[row, k + 1], ev.corrupted(x, y, name, severity, folder, ctx)[0], f"severity {severity}")
    source = f"files {folder.name}" if folder is not None else "generated"
    fig.suptitle(f"{run.suite.name}: the first evaluation image under each corruption ({source})", fontsize=8)
    _save(fig, path)
    return True


def _cluster_order(m: np.ndarray) -> np.ndarray:
    """Stimuli ordered by average-linkage clustering of a matrix, so its blocks show."""
    from scipy.cluster.hierarchy import leaves_list, linkage
    from scipy.spatial.distance import squareform

    d = np.clip(1 - m, 0, None)
    np.fill_diagonal(d, 0)
    return leaves_list(linkage(squareform((d + d.T) / 2, checks=False), "average"))


def similarity_matrices(plan: Plan, path: Path, most: int = 120) -> bool:
    """Top row: the suite's reference target (a similarity evaluation's named target) and every
    other training target of the suite, each on its own held-out stimuli. Bottom row: each model's
    similarity (first seed) on the reference's held-out stimuli, with its Pearson r to it. One
    stimulus order per matrix pair (the reference's clustering), at most ``most`` stimuli shown."""
    from bench.compute import evaluated_model
    from bench.evals.similarity import correlation, mixed, tap_similarity
    from bench.targets.card import card_target
    from bench.train.checkpoint import load_checkpoint

    run = plan.run
    named = [s.params.target for s in suite_evaluations(run.suite) if s.kind == "similarity" and s.params.target]
    cards = {c.name: c for c in run.suite.cards if not c.external}
    seed = run.suite.seeds[0]
    if not named or named[0] not in cards or any((n, seed) not in plan.checkpoints for n in cards):
        return False
    targets = {n: card_target(c, seed, run.data_root) for n, c in cards.items()}
    reference = targets[named[0]]
    if reference is None:
        return False
    held = reference.heldout_indices()
    if len(held) < 3:
        return False
    ref = reference.matrix(held).double().numpy()  # r over all of them, as the similarity column
    shown = min(most, len(held))
    order = _cluster_order(ref[:shown, :shown])
    others = [(n, t) for n, t in targets.items() if t is not None and n != named[0] and len(t.heldout_indices()) >= 3]
    tops = [(named[0], reference), *others]  # a target without held-out stimuli has none to show
    plt = _plt()
    cols = max(len(tops), len(cards))
    fig, axes = plt.subplots(2, cols, figsize=(2.1 * cols, 4.6), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")

    def show(ax, m, title):
        lim = float(np.abs(m[~np.eye(len(m), dtype=bool)]).max()) or 1.0
        ax.imshow(m, cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
        ax.set_title(title, fontsize=6)
        ax.axis("on")
        ax.set_xticks([])
        ax.set_yticks([])

    for k, (name, target) in enumerate(tops):
        m = ref if k == 0 else target.matrix(target.heldout_indices()[:shown]).double().numpy()
        o = order if k == 0 else _cluster_order(m)
        kind = target.description.get("kind", "") + (
            f", {target.description['shuffle']}" if "shuffle" in target.description else ""
        )
        m = m[:shown, :shown]
        show(axes[0, k], m[np.ix_(o, o)], f"target of {name}\n({kind}{', reference' if k == 0 else ''})")
    images = reference.images[held].to(run.dev)
    iu = np.triu_indices(len(held), 1)
    for k, (name, card) in enumerate(cards.items()):
        ckpt = plan.checkpoints[(name, seed)][0]
        weights = load_checkpoint(ckpt)["layer_weights"]
        with torch.no_grad():
            feats = evaluated_model(card, ckpt, run.dev).features(images)
        m = mixed([tap_similarity(f.cpu()).numpy() for f in feats], weights)
        r = correlation(m[iu], ref[iu])
        show(axes[1, k], m[:shown, :shown][np.ix_(order, order)], f"{name} (seed {seed})\nr = {r:.2f}")
    fig.suptitle(
        f"{run.suite.name}: similarity matrices on held-out stimuli (centred cosine). Top: the targets, each on its "
        f"own held-out stimuli.\nBottom: the models on the reference's ({shown} of {len(held)} shown, in its "
        "clustering order; r with the reference over all of them).",
        fontsize=7,
    )
    _save(fig, path)
    return True


def pictures(plan: Plan, folder: Path) -> dict[str, Path]:
    """The pictures that need images or networks: written into ``folder``, named as figures."""
    out = {}
    for name, draw in zip(NAMES, (adversarial_gallery, noise_strip, corruption_strip, similarity_matrices)):
        if draw(plan, folder / name):
            out[name] = folder / name
    return out
