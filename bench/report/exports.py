"""Per-model exports: a Markdown model card per trained model, and each model's results in
RobustBench's model-info JSON schema (their field names; numbers as percent strings)."""

from __future__ import annotations

import dataclasses
import json

import pandas as pd
from tabulate import tabulate

from bench.cards import ModelCard, shown_path
from bench.config import canonical_json
from bench.evals.reporting import ReportSpec
from bench.external import ExternalCard
from bench.report.escape import code_block, markdown_text
from bench.report.summary import curve_points, curves, headline_per_seed, rows_of


def model_card(
    card: ModelCard, training: pd.Series, results: pd.DataFrame, suite_name: str, specs: list[ReportSpec]
) -> str:
    """Card, data, seed, target, alpha, learned layer weights, compute, environment, numbers."""
    reg = card.regularizer
    history = json.loads(training["history"])
    best = history[int(training["best_epoch"]) - 1]
    weights = json.loads(training["layer_weights"])
    numbers = headline_per_seed(results[(results["model"] == card.name) & (results["seed"] == training["seed"])], specs)
    lines = [
        f"# Model card: {card.name}, seed {training['seed']}",
        "",
        markdown_text(card.description or ""),
        "",
        "| field | value |",
        "|---|---|",
        f"| architecture | {card.arch}, width {card.width}, 1 input channel |",
        f"| dataset | {card.dataset}; validation fraction {card.trainer.val_fraction} (split seed {card.trainer.split_seed}); "
        f"training images {card.trainer.train_images or 'all'}; augmentation {'crop+flip' if card.trainer.augment else 'none'} |",
        f"| training | {card.trainer.epochs} epochs, batch {card.trainer.batch_size}, SGD lr {card.trainer.lr} x "
        f"{card.trainer.lr_decay} every {card.trainer.lr_step_epochs} (cycle {card.trainer.lr_cycle_epochs}), momentum "
        f"{card.trainer.momentum}, weight decay {card.trainer.weight_decay} |",
        f"| regularizer | {card.regularizer_label}"
        + (
            f", alpha {reg.alpha} ({reg.loss_convention} convention), {reg.pairs_per_step} pairs per step"
            if reg
            else ""
        )
        + " |",
        f"| target | {training['target'] or '-'} |",
        f"| seed | {training['seed']} |",
        f"| best epoch | {training['best_epoch']} (val loss {best['val_loss']:.4f}, val acc {best['val_acc']:.4f}) |",
        f"| compute | {training['seconds']:.0f} s of training on {training['device']} ({training.get('numerics', '')}) |",
        f"| environment | {training['packages']} |",
        f"| card hash / checkpoint hash | {card.card_hash} / {training['checkpoint_hash']} |",
        "",
    ]
    if weights:
        taps = json.loads(training.get("taps") or "[]") or [f"tap {i}" for i in range(len(weights))]
        lines += [
            "## Learned layer weights",
            "",
            tabulate([weights], headers=taps, tablefmt="github", floatfmt=".3f"),
            "",
        ]
    lines += headline_section(numbers, f"suite `{suite_name}`")
    shown = dataclasses.replace(card, path=shown_path(card.path))
    lines += ["## Card as validated", "", *code_block(canonical_json(shown), "json"), ""]
    return "\n".join(lines)


def external_card(card: ExternalCard, results: pd.DataFrame, suite_name: str, specs: list[ReportSpec]) -> str:
    """An outside model's page: where its weights came from and how its inputs are mapped; no
    training, seeds or layer weights (it has none here)."""
    rows = results[results["model"] == card.name]
    numbers = headline_per_seed(rows, specs)
    contract = card.input
    lines = [
        f"# Model card: {card.name} (external)",
        "",
        markdown_text(card.description or ""),
        "",
        "| field | value |",
        "|---|---|",
        *[f"| {k} | {markdown_text(v)} |" for k, v in card.provenance().items()],
        f"| weights hash | {rows['checkpoint_hash'].iloc[0] if len(rows) else '-'} |",
        f"| input | {contract.channels} x {contract.size[0]} x {contract.size[1]}, range {list(contract.range)}"
        + (f", mean {list(contract.mean)}, std {list(contract.std)}" if contract.mean else "")
        + " |",
        "| training | not trained by neuroreg-bench: no training history, seeds or layer weights |",
        f"| card hash | {card.card_hash} |",
        "",
    ]
    lines += headline_section(numbers, f"suite `{suite_name}`, one set of weights")
    return "\n".join(lines)


def headline_section(numbers: pd.DataFrame, scope: str) -> list[str]:
    """A model page's headline numbers (none: no section)."""
    if numbers.empty:
        return []
    table = tabulate(
        numbers[["column", "value"]].values.tolist(), headers=["metric", "value"], tablefmt="github", floatfmt=".4g"
    )
    return [f"## Headline numbers ({scope})", "", table, ""]


def robustbench_info(card: ModelCard | ExternalCard, results: pd.DataFrame, specs: list[ReportSpec]) -> dict:
    """RobustBench model-info fields, seeds averaged, as the evaluations declare them (their
    report specs): only fields we measured are filled, so ``autoattack_acc`` stays absent without
    a curve that declares it (only its epsilon may come from another curve, never that curve's
    number in AutoAttack's field). Our own numbers go under ``neuroreg_bench``: every headline
    curve and every summary."""
    r = results[results["model"] == card.name]
    info = {
        "link": "",
        "name": card.name,
        "authors": "",
        "additional_data": False,
        "number_forward_passes": 1,
        "dataset": card.dataset or (r["dataset"].iloc[0] if len(r) else ""),
        "venue": "",
        "architecture": card.arch if card.external else f"{card.arch} (width {card.width}, grayscale)",
    }
    per_seed = headline_per_seed(r, specs)
    extra = {
        "seeds": sorted(int(s) for s in r["seed"].unique()),
        "n_images": int(r["n_images"].max()),
        "suite": f"{r['suite'].iloc[0]} v{int(r['suite_version'].iloc[0])}",
        "regularizer": card.regularizer_label,
        **({"provenance": card.provenance()} if card.external else {}),
    }
    images = {}  # RobustBench field -> on how many images it stands (AutoAttack often runs on fewer)
    for spec in specs:
        for s in spec.summaries:
            value = per_seed[per_seed["column"] == s.column]["value"].mean()
            if s.robustbench:
                info[s.robustbench] = f"{value * 100:.2f}" if s.percent else float(value)
                images[s.robustbench] = _images(rows_of(r, s.metric))
            else:
                extra[s.column.replace(" ", "_") + ("_acc" if s.percent else "")] = (
                    f"{value * 100:.2f}" if s.percent else float(value)
                )
        for c in spec.curves:
            points = curve_points(rows_of(r, c.metric))
            if c.headline and len(points):
                extra[f"{c.metric.label}_acc"] = {
                    f"{p:g}": f"{v * 100:.2f}" for p, v in points.groupby("param")["value"].mean().items()
                }
    info["reported"] = ""
    declaring = sorted((c for c in curves(specs) if c.robustbench), key=lambda c: set(c.robustbench) <= {"eps"})
    for c in declaring:  # those that fill an accuracy field first: their epsilon is the one stated
        positive = curve_points(rows_of(r, c.metric)).query("param > 0")
        if not len(positive):
            continue
        eps = positive["param"].max()  # the largest epsilon evaluated
        for name in (f for f in c.robustbench if f not in info):
            info[name] = (
                f"{eps:g}" if name == "eps" else f"{positive[positive['param'] == eps]['value'].mean() * 100:.2f}"
            )
            if name != "eps":
                images[name] = _images(positive)
    if images:
        extra["images_per_field"] = images
        if len(set(images.values())) > 1:
            extra["images_note"] = "these fields stand on different numbers of evaluation images: " + ", ".join(
                f"{k} on {v}" for k, v in images.items()
            )
    info["neuroreg_bench"] = extra
    return info


def _images(rows: pd.DataFrame) -> int:
    return int(rows["n_images"].max()) if len(rows) else 0
