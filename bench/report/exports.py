"""Per-model exports: a Markdown model card per trained model, and each model's results in
RobustBench's model-info JSON schema (their field names; numbers as percent strings)."""
from __future__ import annotations

import json

import pandas as pd
from tabulate import tabulate

from bench.cards import ModelCard
from bench.config import canonical_json
from bench.models.resnet import TAPS
from bench.report.summary import headline_per_seed


def model_card(card: ModelCard, training: pd.Series, results: pd.DataFrame, suite_name: str) -> str:
    """Card, data, seed, target, alpha, learned layer weights, compute, environment, numbers."""
    reg = card.regularizer
    history = json.loads(training["history"])
    best = history[int(training["best_epoch"]) - 1]
    weights = json.loads(training["layer_weights"])
    numbers = headline_per_seed(results[(results["model"] == card.name) & (results["seed"] == training["seed"])])
    lines = [f"# Model card: {card.name}, seed {training['seed']}", "", card.description or "", "",
             "| field | value |", "|---|---|",
             f"| architecture | {card.arch}, width {card.width}, 1 input channel |",
             f"| dataset | {card.dataset}; validation fraction {card.trainer.val_fraction} (split seed {card.trainer.split_seed}); "
             f"training images {card.trainer.train_images or 'all'}; augmentation {'crop+flip' if card.trainer.augment else 'none'} |",
             f"| training | {card.trainer.epochs} epochs, batch {card.trainer.batch_size}, SGD lr {card.trainer.lr} x "
             f"{card.trainer.lr_decay} every {card.trainer.lr_step_epochs} (cycle {card.trainer.lr_cycle_epochs}), momentum "
             f"{card.trainer.momentum}, weight decay {card.trainer.weight_decay} |",
             f"| regularizer | {card.regularizer_label}" + (f", alpha {reg.alpha} ({reg.loss_convention} convention), "
                                                            f"{reg.pairs_per_step} pairs per step" if reg else "") + " |",
             f"| target | {training['target'] or '-'} |",
             f"| seed | {training['seed']} |",
             f"| best epoch | {training['best_epoch']} (val loss {best['val_loss']:.4f}, val acc {best['val_acc']:.4f}) |",
             f"| compute | {training['seconds']:.0f} s of training on {training['device']} |",
             f"| environment | {training['packages']} |",
             f"| card hash / checkpoint hash | {card.card_hash} / {training['checkpoint_hash']} |", ""]
    if weights:
        lines += ["## Learned layer weights", "", tabulate([weights], headers=list(TAPS), tablefmt="github", floatfmt=".3f"), ""]
    if not numbers.empty:
        lines += [f"## Headline numbers (suite `{suite_name}`)", "",
                  tabulate(numbers[["column", "value"]].values.tolist(), headers=["metric", "value"], tablefmt="github",
                           floatfmt=".4g"), ""]
    lines += ["## Card as validated", "", "```json", canonical_json(card), "```", ""]
    return "\n".join(lines)


def robustbench_info(card: ModelCard, results: pd.DataFrame) -> dict:
    """RobustBench model-info fields, seeds averaged. Only fields we measured are filled:
    ``autoattack_acc`` needs an AutoAttack evaluation and stays absent without one; our PGD
    numbers go under ``neuroreg_bench`` so they are never read as AutoAttack numbers."""
    r = results[results["model"] == card.name]
    mean = lambda ev, param=None: r[(r["evaluation"] == ev) & ((r["param"] == param) if param is not None else r["param"].isna())  # noqa: E731
                                    & (r["statistic"] == "accuracy")]["value"].mean()
    info = {"link": "", "name": card.name, "authors": "", "additional_data": False, "number_forward_passes": 1,
            "dataset": card.dataset, "venue": "", "architecture": f"{card.arch} (width {card.width}, grayscale)",
            "clean_acc": f"{mean('clean') * 100:.2f}", "reported": ""}
    auto = r[(r["evaluation"] == "autoattack-linf") & (r["param"] > 0)]
    pgd = r[(r["evaluation"] == "pgd-linf") & (r["param"] > 0) & (r["statistic"] == "accuracy")]
    if not auto.empty:  # RobustBench's L-inf AutoAttack field, at the largest epsilon evaluated
        eps = auto["param"].max()
        info["eps"] = f"{eps:g}"
        info["autoattack_acc"] = f"{auto[auto['param'] == eps]['value'].mean() * 100:.2f}"
    elif not pgd.empty:  # no AutoAttack: the epsilon only, never a PGD number in AutoAttack's field
        info["eps"] = f"{pgd['param'].max():g}"
    extra = {"seeds": sorted(int(s) for s in r["seed"].unique()), "n_images": int(r["n_images"].max()),
             "suite": f"{r['suite'].iloc[0]} v{int(r['suite_version'].iloc[0])}", "regularizer": card.regularizer_label}
    for ev in dict.fromkeys(r["evaluation"]):
        if ev.startswith(("pgd-", "transfer-", "autoattack-")):
            e = r[(r["evaluation"] == ev) & (r["statistic"] == "accuracy")].groupby("param")["value"].mean()
            extra[f"{ev}_acc"] = {f"{p:g}": f"{v * 100:.2f}" for p, v in e.items()}
        elif ev.startswith("minimal-"):
            extra[f"{ev}_median"] = float(r[(r["evaluation"] == ev) & (r["statistic"] == "median")]["value"].mean())
        elif ev == "corruptions":
            extra["corruptions_mean_acc"] = f"{r[r['evaluation'] == ev]['value'].mean() * 100:.2f}"
    info["neuroreg_bench"] = extra
    return info
