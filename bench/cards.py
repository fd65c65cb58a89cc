"""Zoo cards (``models/*.toml``) and suite cards (``suites/*.toml``): found on a search path,
parsed into typed dataclasses and validated on load."""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field

from bench.config import identity_hash, parse, read_toml
from bench.data import is_dataset_card
from bench.errors import CardError, UnknownName
from bench.external import ExternalCard, parse_external_card
from bench.models import ARCHITECTURES
from bench.targets import TargetSpec, validate_target_spec
from bench.train.adversarial import AdversarialSpec

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# bump when a change of bench/train alters the weights a card produces (2: stimuli exclude the
# validation split, held-out stimuli, a shuffle permutation per training seed, no BatchNorm
# update from probing the taps' channels)
TRAINER_VERSION = 2
# every number bounded to what can make sense: a huge finite value is a typo, not a setting
Seed = Annotated[int, Field(ge=0, le=2**31 - 1)]
Seeds = Annotated[tuple[Seed, ...], Field(min_length=1, max_length=10_000)]
_FORBID = ConfigDict(extra="forbid")


def card_roots() -> list[Path]:
    """``$BENCH_CARDS`` (path-separated), then the working directory, then the project checkout."""
    roots = [Path(p) for p in os.environ.get("BENCH_CARDS", "").split(os.pathsep) if p]
    return list(dict.fromkeys(roots + [Path.cwd(), PROJECT_ROOT]))


def card_names(folder: str) -> list[str]:
    return sorted({p.stem for root in card_roots() for p in (root / folder).glob("*.toml")})


def shown_path(path: str) -> str:
    """A card's path as published: relative to the checkout or the working directory where it
    lies inside one, so reports name no machine's folders."""
    p = Path(path).resolve()
    for root in (PROJECT_ROOT, Path.cwd()):
        if p.is_relative_to(root.resolve()):
            return str(p.relative_to(root.resolve()))
    return p.name


SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_+-]{0,99}")  # a file and folder name, a table cell, a plot label


def check_name(name: str, where: str, kind: str) -> str:
    """Names become report folders, file names, table cells and plot labels: letters, digits,
    '-', '_' and '+', not starting with '_', '-' or '+' (no '.', '..', '/', whitespace, markup)."""
    if not SAFE_NAME.fullmatch(name):
        raise CardError(
            f"{where}: {kind} name {name!r} is not allowed; use letters, digits, '-', '_' and '+', starting with "
            "a letter or digit (at most 100 characters)"
        )
    return name


def find_card(folder: str, name: str, kind: str) -> Path:
    if name.endswith(".toml"):
        path = Path(name)
        if not path.is_file():
            raise CardError(f"{path}: no such {kind} card file")
        return path
    for root in card_roots():
        path = root / folder / f"{name}.toml"
        if path.is_file():
            return path
    raise UnknownName(kind, name, card_names(folder))


# --------------------------------------------------------------------------- zoo cards
@dataclass(frozen=True)
class TrainerSpec:
    __pydantic_config__ = _FORBID
    epochs: Annotated[int, Field(ge=1, le=10_000)] = 40
    batch_size: Annotated[int, Field(ge=1, le=65_536)] = 64
    lr: Annotated[float, Field(gt=0, le=10)] = 0.1
    lr_decay: Annotated[float, Field(gt=0, le=1)] = 0.3
    lr_step_epochs: Annotated[int, Field(ge=1, le=10_000)] = 4
    lr_cycle_epochs: Annotated[int, Field(ge=1, le=10_000)] = 20
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    weight_decay: Annotated[float, Field(ge=0, le=1)] = 0.0
    val_fraction: Annotated[float, Field(ge=0, lt=1)] = 0.01
    split_seed: Seed = 0
    train_images: Annotated[int, Field(ge=0, le=100_000_000)] = 0  # 0: the whole training split; else a seeded subset
    augment: bool = True  # random crop (pad 4, reflect) + horizontal flip
    label_smoothing: Annotated[float, Field(ge=0, lt=1)] = 0.0  # a generic regularizer (matched-cost controls)
    # positive controls (bench.train.adversarial): Gaussian-noise augmentation at [0,1] scale, and
    # PGD adversarial training (L-inf); each training image gets them after any crop and flip
    noise_sigma: Annotated[float, Field(ge=0, le=1)] = 0.0
    adversarial: AdversarialSpec | None = None


@dataclass(frozen=True)
class RegularizerSpec:
    __pydantic_config__ = _FORBID
    alpha: Annotated[float, Field(ge=0, le=1e4)]
    target: Any  # validated by the target registry into a TargetSpec
    pairs_per_step: Annotated[int, Field(ge=1, le=4096)] = 16
    loss_convention: Literal["code", "paper"] = "code"
    loss_eps: Annotated[float, Field(gt=0, le=0.1)] = 1e-5
    ema_beta: Annotated[float, Field(ge=0, lt=1)] = 0.9
    # BatchNorm's running statistics (what evaluation normalises with) during the pair path:
    # 'shared', updated by stimuli and classification batches alike (the follow-up code, method.md
    # §3); 'classification', updated by classification batches only (stimuli are still
    # normalised by their own batch statistics). Natural-image stimuli in a Fashion-MNIST model
    # cost clean accuracy through the shared statistics whatever alpha is (bench sweep).
    pair_bn: Literal["shared", "classification"] = "shared"


@dataclass(frozen=True)
class ModelCard:
    __pydantic_config__ = _FORBID
    arch: str
    dataset: str
    width: Annotated[int, Field(ge=1, le=1024)] = 64
    # centered: the network maps inputs in [0,1] to 5(x - 0.5) (method.md §3); unit: it takes
    # them as they are (the follow-up's Fashion-MNIST code)
    input_scale: Literal["centered", "unit"] = "centered"
    description: str = ""
    seeds: Seeds = (0,)
    trainer: TrainerSpec = TrainerSpec()
    regularizer: RegularizerSpec | None = None
    name: str = ""  # the file's stem, set on load
    path: str = ""

    external = False  # trained by the zoo (bench.external.ExternalCard: trained elsewhere)

    def seeds_of(self, seeds: tuple[int, ...]) -> tuple[int, ...]:
        """Which of a run's seeds this model is trained and evaluated at: all of them."""
        return seeds

    @property
    def regularizer_label(self) -> str:
        """'none', 'shuffle' or the target kind (a positive control without a target:
        'adversarial' or 'noise-augment'): what the leaderboard groups by."""
        reg, tr = self.regularizer, self.trainer
        if self.has_target:
            return "shuffle" if reg.target.shuffle != "none" else reg.target.kind
        if tr.adversarial is not None:
            return "adversarial"
        return "noise-augment" if tr.noise_sigma > 0 else "none"

    @property
    def has_target(self) -> bool:
        return self.regularizer is not None and self.regularizer.alpha > 0

    @functools.cached_property
    def card_hash(self) -> str:
        """Once per card object (a dataset card's digest reads its files). The training recipe only (a new description or seed list does not retrain), and the
        trainer's version (a change of training code that alters weights does)."""
        recipe = {f: getattr(self, f) for f in ("arch", "dataset", "width", "input_scale", "trainer", "regularizer")}
        if is_dataset_card(self.dataset):  # a user's files: changed data is a new recipe
            from bench.data.card import dataset_fingerprint

            recipe["dataset_digest"] = dataset_fingerprint(self.dataset)
        return identity_hash({**recipe, "trainer_version": TRAINER_VERSION})


def read_named_card(folder: str, name: str, kind: str, reserved: tuple[str, ...]) -> tuple[Path, str, dict]:
    """A card's file found, its name checked and its TOML read: (path, where, raw). The keys in
    ``reserved`` are set on load (a card is named by its file name), never by the card."""
    path = find_card(folder, name, kind)
    where = str(path)
    check_name(path.stem, where, f"{kind} card")
    raw = read_toml(path)
    for key in reserved:
        if key in raw:
            raise CardError(f"{where}: unknown key '{key}'; a card is named by its file name")
    return path, where, raw


def load_model_card(name: str) -> ModelCard | ExternalCard:
    """A zoo card, or an external one (a card with a 'source' table: a model trained elsewhere)."""
    path, where, raw = read_named_card("models", name, "model", ("name", "path"))
    if "source" in raw:
        if not isinstance(raw["source"], dict):
            raise CardError(f"{where}: key 'source' must be a table (kind, path, ...)")
        card = parse_external_card(raw, where, path.stem)
        if card.dataset:
            is_dataset_card(card.dataset, f"{where}: key 'dataset'")
        return card
    target_table = None
    if isinstance(raw.get("regularizer"), dict):
        raw["regularizer"] = dict(raw["regularizer"])
        target_table = raw["regularizer"].get("target")
        if not isinstance(target_table, dict):
            raise CardError(f"{where}: key 'regularizer.target' must be a table (got {target_table!r})")
    card = parse(ModelCard, raw, where)
    repeated = sorted({s for s in card.seeds if card.seeds.count(s) > 1})
    if repeated:
        raise CardError(f"{where}: key 'seeds' lists {repeated} more than once; list each once")
    ARCHITECTURES.get(card.arch, f"{where}: key 'arch'")
    is_dataset_card(card.dataset, f"{where}: key 'dataset'")
    if card.regularizer is not None:
        spec: TargetSpec = validate_target_spec(target_table, where, "regularizer.target")
        card = dataclasses.replace(card, regularizer=dataclasses.replace(card.regularizer, target=spec))
    return dataclasses.replace(card, name=path.stem, path=where)


# --------------------------------------------------------------------------- suite cards
@dataclass(frozen=True)
class SubsetSpec:
    """The evaluation images: ``size`` of them drawn with ``seed`` from the dataset's test split,
    or from the models' validation split (``split = "validation"``: choosing a hyper-parameter,
    never the test images a suite reports on)."""

    __pydantic_config__ = _FORBID
    size: Annotated[int, Field(ge=1, le=100_000_000)]
    seed: Seed = 0
    split: Literal["test", "validation"] = "test"


@dataclass(frozen=True)
class CompareSpec:
    """Which models the paired comparisons use as references (empty: the first model labelled
    'none' as baseline and the first labelled 'shuffle' as control), and how their intervals are
    made: 't' on the per-seed paired statistic (default), or a bootstrap over seeds and images
    ('crossed-bootstrap' for generalisation to new images; 'hierarchical-bootstrap')."""

    __pydantic_config__ = _FORBID
    baseline: str = ""
    control: str = ""
    interval: Literal["t", "hierarchical-bootstrap", "crossed-bootstrap"] = "t"
    level: Annotated[float, Field(ge=0.5, lt=1)] = 0.95
    resamples: Annotated[int, Field(ge=100, le=1_000_000)] = 2000


@dataclass(frozen=True)
class EndpointSpec:
    """A primary question, declared before the suite's first training (``[[endpoints]]``): the
    contrast model - reference of one evaluation's summary ('accuracy' at a grid point 'param',
    'AUC', 'log ratio of medians', ...), tested per training seed (paired t, or the exact
    sign-flip test) at ``alpha`` in the claimed ``direction``, two-sided unless ``sides = 1``.
    ``margin``: an equivalence margin (in the contrast's units: accuracy as a fraction); an
    interval within it means "no effect that matters". ``min_clean_ratio``: the follow-up's
    health rule on mean clean accuracy. ``says``: what each verdict means, in words."""

    __pydantic_config__ = _FORBID
    model: str
    reference: str
    evaluation: str
    summary: str
    param: Annotated[float, Field(ge=0, le=1e6)] | None = None
    name: str = ""
    test: Literal["t", "sign-flip"] = "t"
    alpha: Annotated[float, Field(gt=0, lt=0.5)] = 0.05
    direction: Literal["greater", "less"] = "greater"
    sides: Literal[1, 2] = 2
    margin: Annotated[float, Field(gt=0, le=1e6)] | None = None
    min_clean_ratio: Annotated[float, Field(gt=0, le=10)] | None = None
    says: dict[Literal["met", "not met", "inconclusive"], str] = field(default_factory=dict)
    description: str = ""


@dataclass(frozen=True)
class CheckSpec:
    """``bench check``. Evaluation numbers of the reference's committed checkpoints may move by
    max(absolute, relative x |reference|): the absolute tolerance is looked up by
    'evaluation/statistic', then statistic, then evaluation name (``tolerances``), else
    ``default``. The training check trains the suite's seeds and compares per-model means with
    the spread of ``reference_seeds`` (trained by --update; default: the suite's seeds) at a
    family-wise false-alarm rate ``false_alarm``."""

    __pydantic_config__ = _FORBID
    default: Annotated[float, Field(ge=0, le=1)] = 0.0
    relative: Annotated[float, Field(ge=0, le=1)] = 0.0
    tolerances: dict[str, Annotated[float, Field(ge=0, le=1e6)]] = field(default_factory=dict)
    reference_seeds: tuple[Seed, ...] = ()
    false_alarm: Annotated[float, Field(gt=0, lt=0.5)] = 0.01
    training_floor: Annotated[float, Field(ge=0, le=1)] = 0.01  # relative: what a zero seed spread still allows
    # the numerics the committed checkpoints are evaluated in, when the reference is written and
    # checked: portable (bench.numerics: one code path per library, one thread, oneDNN off), so
    # their numbers are the same bits on any x86 CPU with AVX2 ('baseline': any x86-64); '' evaluates
    # them with this machine's kernels (then tolerances must absorb other CPUs' drift)
    portable: Literal["avx2", "baseline", ""] = "avx2"

    def tolerance(self, evaluation: str, statistic: str, reference: float) -> float:
        base = statistic.split(":", 1)[0]
        for key in (f"{evaluation}/{base}", base, evaluation):
            if key in self.tolerances:
                absolute = self.tolerances[key]
                break
        else:
            absolute = self.default
        return max(absolute, self.relative * abs(reference)) if math.isfinite(reference) else absolute


@dataclass(frozen=True)
class ExecutionSpec:
    """Where a suite's trainings and cells run by default (``bench run`` options override it):
    bench.executors."""

    __pydantic_config__ = _FORBID
    executor: Literal["serial", "local", "ray", "slurm", "slurm-local"] = "serial"
    workers: Annotated[int, Field(ge=0, le=4096)] = 2  # local: worker processes (0: one per usable CPU core)
    threads: Annotated[int, Field(ge=0, le=1024)] = 0  # torch threads per worker; 0: 1 per worker (all cores serially)
    address: str = ""  # ray: an existing cluster ('auto', 'host:port'); empty: start a local one
    partition: str = ""  # slurm
    time_min: Annotated[int, Field(ge=1, le=100_000)] = 240  # slurm: per job
    gpus: Annotated[int, Field(ge=0, le=64)] = 0  # per training job (ray, slurm)
    mem_gb: Annotated[int, Field(ge=1, le=4096)] = 16  # slurm: per job
    retries: Annotated[int, Field(ge=0, le=100)] = 3  # ray: re-runs of a task whose worker died


@dataclass(frozen=True)
class EvalSpec:
    kind: str
    params: Any  # the evaluation's Params dataclass


@dataclass(frozen=True)
class SuiteCard:
    __pydantic_config__ = _FORBID
    version: Annotated[int, Field(ge=0, le=2**31 - 1)]
    dataset: str
    models: Annotated[tuple[str, ...], Field(min_length=1, max_length=1000)]
    subset: SubsetSpec
    evaluations: tuple[Any, ...]
    seeds: Seeds = (0,)
    description: str = ""
    batch_size: Annotated[int, Field(ge=1, le=65_536)] = 250
    compare: CompareSpec = CompareSpec()
    endpoints: tuple[EndpointSpec, ...] = ()
    check: CheckSpec = CheckSpec()
    execution: ExecutionSpec = ExecutionSpec()
    name: str = ""
    path: str = ""
    cards: tuple[Any, ...] = field(default=(), repr=False)  # the loaded ModelCards, in order


def suite_card_hash(suite: SuiteCard) -> str:
    """sha256 of the suite card file as it is now (16 hex digits); of its parsed content for a
    suite built in memory (a sweep)."""
    import hashlib

    if suite.path and Path(suite.path).is_file():
        return hashlib.sha256(Path(suite.path).read_bytes()).hexdigest()[:16]
    return identity_hash({k: v for k, v in dataclasses.asdict(suite).items() if k != "cards"})


def load_suite_card(name: str) -> SuiteCard:
    from bench.evals import EVALUATIONS  # evaluations import attack libraries: only when needed

    path = find_card("suites", name, "suite")
    where = str(path)
    check_name(path.stem, where, "suite card")
    raw = read_toml(path)
    for key in ("name", "path", "cards"):
        if key in raw:
            raise CardError(f"{where}: unknown key '{key}'")
    suite = parse(SuiteCard, raw, where)
    is_dataset_card(suite.dataset, f"{where}: key 'dataset'")
    evals = []
    for n, table in enumerate(suite.evaluations):
        prefix = f"evaluations[{n}]"
        if not isinstance(table, dict) or not isinstance(table.get("kind"), str):
            raise CardError(f"{where}: '{prefix}' must be a table with a string key 'kind'")
        ev = EVALUATIONS.get(table["kind"], f"{where}: key '{prefix}.kind'")
        params = parse(ev.Params, ev.prepare({k: v for k, v in table.items() if k != "kind"}), where, prefix)
        reference = getattr(params, "reference", "")  # a table's reference model (corruptions' mCE)
        if reference and reference not in suite.models:
            raise CardError(
                f"{where}: key '{prefix}.reference': model {reference!r} is not one of the suite's models "
                f"{list(suite.models)}; name one of them"
            )
        for source in ev(params).sources():
            if source not in suite.models:
                raise CardError(
                    f"{where}: key '{prefix}.source': model {source!r} is not one of the suite's models "
                    f"{list(suite.models)}; add it to 'models'"
                )
        evals.append(EvalSpec(table["kind"], params))
    for key, values in (
        ("models", suite.models),
        ("seeds", suite.seeds),
        ("check.reference_seeds", suite.check.reference_seeds),
    ):
        repeated = sorted({v for v in values if values.count(v) > 1}, key=str)
        if repeated:
            raise CardError(
                f"{where}: key '{key}' lists {', '.join(map(repr, repeated))} more than once; list each once"
            )
    cards = []
    for model in suite.models:
        try:
            card = load_model_card(model)
        except UnknownName as exc:
            raise CardError(f"{where}: key 'models': {exc}") from None
        if card.dataset and card.dataset != suite.dataset:
            raise CardError(
                f"{where}: model {model!r} is trained on {card.dataset!r} but the suite evaluates "
                f"{suite.dataset!r}; use a model card for {suite.dataset!r}"
            )
        twin = next((c for c in cards if c.name == card.name), None)
        if twin is not None:
            same = Path(twin.path).resolve() == Path(card.path).resolve()
            raise CardError(
                f"{where}: key 'models': {model!r} "
                + (
                    f"is the card {twin.name!r} again; list it once"
                    if same
                    else f"and {twin.path} are two cards named {card.name!r} (results are keyed by name); rename one"
                )
            )
        cards.append(card)
    if suite.check.reference_seeds and suite.seeds[0] not in suite.check.reference_seeds:
        raise CardError(
            f"{where}: key 'check.reference_seeds' must include the suite's first seed {suite.seeds[0]} "
            "(its models are the reference's committed checkpoints)"
        )
    for key in ("baseline", "control"):
        ref = getattr(suite.compare, key)
        if ref and ref not in suite.models:
            raise CardError(
                f"{where}: key 'compare.{key}': {ref!r} is not one of the suite's models {list(suite.models)}"
            )
    offered: dict[str, set[str]] = {}
    for k, ev in enumerate(evals):
        for label, names in EVALUATIONS.get(ev.kind)(ev.params).report().contrasts().items():
            if label in offered:
                raise CardError(
                    f"{where}: 'evaluations[{k}]' reports {label!r}, which an earlier evaluation reports too "
                    "(their numbers would mix); merge them or change one"
                )
            offered[label] = set(names)
    for k, e in enumerate(suite.endpoints):
        check_endpoint(e, suite.models, offered, f"{where}: key 'endpoints[{k}]")
    return dataclasses.replace(suite, name=path.stem, path=where, evaluations=tuple(evals), cards=tuple(cards))


def check_endpoint(e: EndpointSpec, models: tuple[str, ...], offered: dict[str, set[str]], where: str) -> None:
    """An endpoint must name the suite's models and a contrast its evaluations offer."""
    for key in ("model", "reference"):
        if getattr(e, key) not in models:
            raise CardError(f"{where}.{key}': {getattr(e, key)!r} is not one of the suite's models {list(models)}")
    if e.model == e.reference:
        raise CardError(f"{where}.reference': a model against itself; name another model")
    offered = {"clean": {"accuracy"}, **offered}
    if e.evaluation not in offered:
        raise CardError(
            f"{where}.evaluation': {e.evaluation!r} is not reported by this suite; one of {sorted(offered)}"
        )
    if e.summary not in offered[e.evaluation]:
        raise CardError(f"{where}.summary': {e.evaluation} offers {sorted(offered[e.evaluation])}, not {e.summary!r}")
    curve_point = e.summary == "accuracy" and e.evaluation != "clean"
    if curve_point != (e.param is not None):
        raise CardError(
            f"{where}.param': "
            + (
                "give the grid point ('param') of the accuracy"
                if curve_point
                else "only a curve's 'accuracy' takes a grid point"
            )
        )
