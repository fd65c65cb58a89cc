"""From recordings (or a simulation recipe) to a target artifact, and the `neural` / `raw` target
kinds that zoo cards use. A card either names an artifact written by `bench neural target`, or
gives a simulation recipe: that one is built once and cached by content hash."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
from pydantic import ConfigDict, Field

from bench.config import as_dict, canonical_json, content_hash
from bench.errors import BenchError
from bench.neural.io import read_recordings, write_sensorium
from bench.neural.predictive import ModelParams, fit
from bench.neural.recordings import Recordings, oracle_variances
from bench.neural.simulate import SimulationParams, simulate
from bench.neural.target import PairTarget, build_artifact, load_artifact
from bench.targets.build import TARGETS, Stimuli

RECIPE_VERSION = (
    2  # bump when building a target from the same recipe gives other pairs (2: predictions at the mean behaviour)
)


def cache_dir() -> Path:
    if os.environ.get("BENCH_CACHE"):
        return Path(os.environ["BENCH_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "neuroreg-bench"


def build_target_file(
    scans: list[Recordings],
    kind: str,
    model: ModelParams,
    seeds: tuple[int, ...],
    out: Path,
    recipe: dict,
    log: Callable[[str], None] = lambda m: None,
) -> dict:
    """Fit the predictive models (neural) and write the artifact; returns its metadata."""
    models = None
    if kind == "neural":
        models = {}
        for k, rec in enumerate(scans):
            models[k] = []
            for seed in seeds:
                fm = fit(rec, model, seed)
                log(
                    f"{rec.source}: model seed {seed}: {fm.epochs} epochs, test correlation {fm.test_correlation.mean():.3f}"
                )
                models[k].append(fm)
    return build_artifact(scans, kind, models, out, recipe)


@dataclass(frozen=True)
class NeuralTargetParams:
    __pydantic_config__ = ConfigDict(extra="forbid")
    artifact: str = ""  # a file written by `bench neural target`; empty: build from `simulate`
    simulate: SimulationParams = SimulationParams()
    model: ModelParams = ModelParams()
    model_seeds: Annotated[
        tuple[Annotated[int, Field(ge=0, le=2**31 - 1)], ...], Field(min_length=1, max_length=100)
    ] = (0,)


def _load_or_build(kind: str, params: NeuralTargetParams) -> PairTarget:
    if params.artifact:
        target, meta = load_artifact(params.artifact)
    else:
        recipe = {
            "kind": kind,
            "simulate": as_dict(params.simulate),
            "recipe_version": RECIPE_VERSION,
            **({"model": as_dict(params.model), "model_seeds": list(params.model_seeds)} if kind == "neural" else {}),
        }
        path = cache_dir() / "targets" / f"{kind}-{content_hash(recipe)}.pt"
        if not path.is_file():
            build_target_file([simulate(params.simulate)], kind, params.model, params.model_seeds, path, recipe)
        target, meta = load_artifact(path)
    if meta["kind"] != kind:
        raise BenchError(f"{params.artifact}: a '{meta['kind']}' target, but the card asks for '{kind}'")
    return target


@TARGETS.register("neural")
class NeuralTarget:
    """Weighted similarity of predictive-model responses (method.md §2)."""

    Params = NeuralTargetParams

    @staticmethod
    def build(params: NeuralTargetParams, seed: int, data_root: Path | None, stimuli: Stimuli) -> PairTarget:
        return _load_or_build("neural", params)  # its stimuli are natural patches, never dataset images


@TARGETS.register("raw")
class RawTarget:
    """The control without a predictive model: single-trial responses (expected not to help)."""

    Params = NeuralTargetParams

    @staticmethod
    def build(params: NeuralTargetParams, seed: int, data_root: Path | None, stimuli: Stimuli) -> PairTarget:
        return _load_or_build("raw", params)


def simulate_to_folder(params: SimulationParams, out: Path) -> tuple[Recordings, float]:
    """Simulate and write the Sensorium layout (with simulation.json and the ground truth) whole:
    into a hidden sibling folder, then renamed into place. Returns the recordings and the median
    oracle signal-to-noise variance ratio."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BenchError(f"{out}: exists and is not an empty folder; choose a new folder")
    rec = simulate(params)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    write_sensorium(rec, tmp)
    (tmp / "simulation.json").write_text(canonical_json(params))
    if out.exists():
        out.rmdir()
    tmp.rename(out)
    signal, noise = oracle_variances(rec)
    return rec, float(np.median(signal / noise))


def read_scans(paths: list[Path]) -> list[Recordings]:
    if not paths:
        raise BenchError("name at least one scan (a Sensorium-layout folder or a .npz/.h5 file)")
    return [read_recordings(p) for p in paths]
