"""Accuracy under the CIFAR-10-C corruptions, per corruption and severity, and their mean.
Generated on the fly (bench.evals.cifar_c, seeded per point and image), or read from the real
CIFAR-10-C / CIFAR-100-C files (converted to grayscale for the grayscale datasets, as their
clean sets) where a user has them."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import AfterValidator, ConfigDict, Field
from torchvision.transforms.v2 import functional as TF

from bench.config import ADDED
from bench.data.base import search_roots
from bench.errors import DataNotFound
from bench.evals import sanity
from bench.evals.base import DataFiles, EvalContext, EvalOutput, Evaluation, Example, Metric, predict
from bench.evals.cifar_c import CIFAR_C, CORRUPTIONS, corrupt
from bench.evals.image_rng import ImageRNG
from bench.evals.reporting import Curve, DetailTable, MetricId, ReportSpec, Summary


def _known(name: str) -> str:
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; known: {', '.join(CORRUPTIONS.names())}")
    return name


C_FOLDERS = {
    "cifar10-gray": "CIFAR-10-C",
    "cifar100-gray": "CIFAR-100-C",
    "cifar10": "CIFAR-10-C",
    "cifar100": "CIFAR-100-C",
}


@dataclass(frozen=True)
class CorruptionParams:
    __pydantic_config__ = ConfigDict(extra="forbid")
    corruptions: Annotated[tuple[Annotated[str, AfterValidator(_known)], ...], Field(min_length=1)] = CIFAR_C
    severities: Annotated[tuple[Annotated[int, Field(ge=1, le=5)], ...], Field(min_length=1)] = (1, 2, 3, 4, 5)
    # generate: on the fly; files: the real CIFAR-C files (error if absent); auto: files if found
    source: Literal["generate", "files", "auto"] = "generate"
    max_images: Annotated[int, Field(ge=0, le=100_000_000)] = 0
    # the reference model of the corruption error (mCE, relative mCE): a model of the suite;
    # "" = the suite's first model (its usual baseline)
    reference: str = field(default="", metadata=ADDED)


def find_files(dataset: str, data_root) -> Path | None:
    folder = C_FOLDERS.get(dataset)
    if folder is None:
        return None
    roots = search_roots(Path(data_root) if data_root else None)  # where the clean dataset is searched
    return next((r / folder for r in roots if (r / folder / "labels.npy").is_file()), None)


def read_corrupted(
    folder: Path, name: str, severity: int, indices: torch.Tensor, y: torch.Tensor, gray: bool = True
) -> torch.Tensor:
    """Rows (severity-1)*10000 + index of <folder>/<name>.npy (N x 32 x 32 x 3 uint8), as floats
    (converted to gray for the grayscale datasets); the labels file must agree with the evaluation labels (the files are aligned with
    the test set)."""
    path = folder / f"{name}.npy"
    if not path.is_file():
        raise DataNotFound(f"{path}: missing; the CIFAR-C folder must hold one .npy per corruption")
    data = np.load(path, mmap_mode="r")
    labels = np.load(folder / "labels.npy", mmap_mode="r")
    per = len(labels) // 5
    rows = (severity - 1) * per + indices.numpy()
    if not np.array_equal(np.asarray(labels[rows]).astype(np.int64), y.numpy()):
        raise DataNotFound(f"{folder / 'labels.npy'}: labels disagree with the test set; not the files of this dataset")
    rgb = torch.from_numpy(np.ascontiguousarray(data[rows])).permute(0, 3, 1, 2)
    return (TF.rgb_to_grayscale(rgb) if gray else rgb).float() / 255


MEAN = MetricId("corruptions")


class Corruptions(Evaluation):
    Params = CorruptionParams
    grid = "corruptions"
    version = 2  # 2: common random numbers, one generator per image
    needs = frozenset({"data_files"})

    def report(self) -> ReportSpec:
        curves = tuple(
            Curve(
                MetricId(f"corruption-{name}"),
                "severity",
                "corruptions",
                "accuracy vs CIFAR-C severity, mean over corruptions and seeds",
                monotone=False,
                pooled=True,
            )
            for name in self.params.corruptions
        )
        return ReportSpec(
            curves,
            (Summary("corruptions mean", MEAN, "mean accuracy", "mean accuracy", "mean-difference"),),
            (
                DetailTable("Corruptions (accuracy %, mean over severities)", "", corruption_table),
                DetailTable(
                    "Corruption error relative to a reference model (%)",
                    "mCE: each corruption's error summed over severities over the reference's (its mean over "
                    "seeds), averaged over corruptions; relative mCE: the same for the error added to the clean "
                    "error (Hendrycks & Dietterich 2019). Mean ± SEM over the model's seeds; the reference's "
                    "own row is about 100 by construction. Clean error from the suite's clean evaluation.",
                    functools.partial(corruption_error_table, reference=self.params.reference),
                    with_clean=True,
                ),
            ),
        )

    def work(self, n_images: int) -> int:
        return n_images * len(self.params.corruptions) * len(self.params.severities)

    def corrupted(self, x, y, name: str, severity: int, folder: Path | None, ctx: EvalContext) -> torch.Tensor:
        """The images of one point: read from the CIFAR-C files in ``folder``, or generated with
        each image's own generator (what every model sees)."""
        if folder is not None:
            return read_corrupted(folder, name, severity, ctx.indices, y, gray=x.shape[1] == 1)
        return corrupt(x, name, severity, ImageRNG.for_images(self.point_seed(ctx, [name, severity]), ctx.image_ids(x)))

    def run(self, model, x, y, ctx: EvalContext) -> EvalOutput:
        p = self.params
        files: DataFiles | None = None if p.source == "generate" else ctx.resource("data_files")
        folder = None if files is None else find_files(files.dataset, files.data_root)
        if p.source == "files" and folder is None:
            raise DataNotFound(
                f"corruptions: source = 'files' but no {C_FOLDERS.get(files.dataset, 'CIFAR-C')} folder "
                "with labels.npy under --data-root or BENCH_DATA (or dataset without CIFAR-C files); "
                "set source = 'generate'"
            )
        if folder is not None and ctx.indices is None:
            raise ValueError("corruptions: reading CIFAR-C files needs the test-set indices of the images")
        out = EvalOutput(
            notes={
                "source": f"files {folder}"
                if folder
                else "generated (CIFAR-10-C parameters, torch re-implementation, seeded per point)"
            }
        )
        per_image = []
        for name in p.corruptions:
            for severity in p.severities:
                xc = self.corrupted(x, y, name, severity, folder, ctx)
                correct = predict(model, xc, ctx) == y
                out.accuracy(MetricId(f"corruption-{name}"), float(severity), correct)
                per_image.append(correct.float())
                ctx.progress.advance(len(y))
        mean = torch.stack(per_image).double().mean(0)
        out.metrics.append(Metric(MEAN, None, "mean accuracy", mean.mean().item()))
        out.examples.append(Example(MEAN, None, "mean accuracy", mean))
        out.flags += sanity.nan_flag("corruptions", [m.value for m in out.metrics])
        return out


def corruption_table(rows: pd.DataFrame, models: list[str]) -> pd.DataFrame:
    """Per model: mean corruption accuracy, then each corruption's accuracy averaged over its
    severities (and seeds), in %."""
    c = rows[rows["metric"].str.startswith("corruption-") & (rows["statistic"] == "accuracy")]
    out = []
    for model in models:
        d = c[c["model"] == model]
        if d.empty:
            continue
        per = d.groupby("metric", sort=False)["value"].mean()
        out.append(
            {
                "model": model,
                "mean": f"{per.mean() * 100:.1f}",
                **{m.split("-", 1)[1]: f"{v * 100:.1f}" for m, v in per.items()},
            }
        )
    return pd.DataFrame(out)


def corruption_errors(rows: pd.DataFrame, reference: str) -> pd.DataFrame:
    """Per model and seed: mCE and relative mCE against ``reference`` (its errors averaged over
    its seeds), as fractions. Needs the corruption accuracies and the clean accuracy rows."""
    acc = rows[rows["metric"].str.startswith("corruption-") & (rows["statistic"] == "accuracy")]
    clean = rows[(rows["metric"] == "clean") & (rows["statistic"] == "accuracy")]
    err = 1 - acc.groupby(["model", "seed", "metric", "param"])["value"].mean()
    clean_err = 1 - clean.groupby(["model", "seed"])["value"].mean()
    if reference not in err.index.get_level_values("model"):
        return pd.DataFrame(columns=["model", "seed", "mCE", "relative mCE"])
    ref = err.xs(reference, level="model").groupby(["metric", "param"]).mean()
    ref_per = ref.groupby("metric").sum()
    ref_added = (ref - clean_err.xs(reference, level="model").mean()).groupby("metric").sum()
    out = []
    for (model, seed), e in err.groupby(["model", "seed"]):
        per = e.droplevel(["model", "seed"]).groupby("metric").sum()
        n_sev = e.groupby("metric").size()
        added = per - n_sev * clean_err.get((model, seed), np.nan)
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = (added / ref_added.where(ref_added > 0)).mean()
        out.append({"model": model, "seed": seed, "mCE": (per / ref_per).mean(), "relative mCE": rel})
    return pd.DataFrame(out)


def corruption_error_table(rows: pd.DataFrame, models: list[str], reference: str = "") -> pd.DataFrame:
    from bench.stats import mean_sem

    reference = reference or (models[0] if models else "")
    errors = corruption_errors(rows, reference)
    out = []
    for model in models:
        d = errors[errors["model"] == model]
        if d.empty:
            continue
        row = {"model": model, "reference": reference, "seeds": len(d)}
        for column in ("mCE", "relative mCE"):
            m, sem, n = mean_sem(d[column].to_numpy(float))
            row[column] = (
                "n/a" if not np.isfinite(m) else f"{m * 100:.1f} ± {sem * 100:.1f}" if n > 1 else f"{m * 100:.1f}"
            )
        out.append(row)
    return pd.DataFrame(out)
