"""Hostile cards: random mutations of the shipped model and suite cards (wrong types, out-of-range
and huge numbers, empty lists, duplicates, unknown keys, unicode, removed keys) are either valid
or rejected on load with one error line naming the file; never a traceback, never accepted and
crashing later. Validation only (milliseconds per card), plus end-to-end cases."""

import math
import tempfile
import tomllib
from pathlib import Path

import pytest
import tomli_w
from conftest import run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.cards import PROJECT_ROOT, load_model_card, load_suite_card
from bench.errors import BenchError

MODEL_CARDS = sorted((PROJECT_ROOT / "models").glob("*.toml"))
SUITE_CARDS = sorted((PROJECT_ROOT / "suites").glob("*.toml"))

scalars = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([0, -1, 1, 10**9, 2**40, -(2**40)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1e308, -1e308, 1e-308, math.inf, math.nan, 0.5, 1.5]),
    st.text(max_size=12),
    st.sampled_from(["", "none", "ids", "linf", "l2", "gaussian", "fmnist-mini", "quick-none", "é∂ƒ©", "../x"]),
    st.booleans(),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=6,
)


def paths(doc, prefix=()):
    """Every key path of a TOML document, through tables and arrays."""
    out = []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out.append(prefix + (k,))
            out += paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out.append(prefix + (i,))
            out += paths(v, prefix + (i,))
    return out


def mutate(doc: dict, data) -> dict:
    path = data.draw(st.sampled_from(paths(doc)), label="path")
    parent = doc
    for p in path[:-1]:
        parent = parent[p]
    key = path[-1]
    action = data.draw(st.sampled_from(["replace", "delete", "unknown", "duplicate", "empty", "nest"]), label="action")
    if action == "replace":
        parent[key] = data.draw(values, label="value")
    elif action == "delete":
        del parent[key]
    elif action == "unknown" and isinstance(parent, dict):
        parent[data.draw(st.text(min_size=1, max_size=8), label="unknown key")] = data.draw(values, label="value")
    elif action == "duplicate" and isinstance(parent[key], list) and parent[key]:
        parent[key] = parent[key] + parent[key][:1]
    elif action == "empty":
        parent[key] = [] if isinstance(parent[key], list) else {} if isinstance(parent[key], dict) else ""
    elif action == "nest":
        parent[key] = {"x": parent[key]}
    return doc


def load_checked(folder: str, name: str, text_doc: dict, loader) -> None:
    root = Path(tempfile.mkdtemp())
    for sub in ("models", "suites"):
        (root / sub).mkdir()
        for card in (PROJECT_ROOT / sub).glob("*.toml"):
            (root / sub / card.name).write_text(card.read_text())
    path = root / folder / f"{name}.toml"
    try:
        path.write_text(tomli_w.dumps(text_doc))
    except (ValueError, TypeError):  # a value TOML cannot hold (e.g. None); nothing to load
        return
    try:
        loader(str(path))
    except BenchError as exc:
        message = str(exc)
        assert "\n" not in message and str(path) in message, message
    # any other exception propagates: the test fails with its traceback


@settings(
    max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_a_mutated_model_card_is_valid_or_one_error_line(data):
    card = data.draw(st.sampled_from(MODEL_CARDS), label="card")
    doc = mutate(tomllib.loads(card.read_text()), data)
    load_checked("models", card.stem, doc, load_model_card)


@settings(
    max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_a_mutated_suite_card_is_valid_or_one_error_line(data):
    card = data.draw(st.sampled_from(SUITE_CARDS), label="card")
    doc = mutate(tomllib.loads(card.read_text()), data)
    load_checked("suites", card.stem, doc, load_suite_card)


HOSTILE = [  # (what is replaced in the tiny suite, by what, a word of the expected error)
    ("levels = [0.0, 0.1, 0.3]", "levels = []", "levels"),
    ("epsilons = [0.0, 0.02]", "epsilons = [0.0, 1e308]", "epsilons"),
    ('models = ["tiny-none", "tiny-pixel"]', 'models = ["tiny-none", "tiny-none"]', "more than once"),
    ("seeds = [0]", "seeds = []", "seeds"),
    ("size = 48", "size = 0", "subset.size"),
]


@pytest.mark.slow
@pytest.mark.parametrize("old, new, word", HOSTILE)
def test_hostile_suite_cards_fail_on_load_through_the_cli(cards, old, new, word):
    suite = cards / "suites" / "tiny.toml"
    suite.write_text(suite.read_text().replace(old, new))
    code, _, err = run_cli("run", "tiny", "--device", "cpu")
    assert code == 2 and err.startswith("error: ") and word in err and "Traceback" not in err
    assert not (cards / ".bench" / "checkpoints").exists()  # rejected before any work


@pytest.mark.slow
def test_hostile_trainer_values_fail_before_training(cards):
    card = cards / "models" / "tiny-none.toml"
    text = card.read_text()
    for old, new, word in (
        ("epochs = 3", "epochs = 3\nlr = 1e300", "trainer.lr"),
        ("batch_size = 32", "batch_size = 4096", "exceeds the"),
    ):
        card.write_text(text.replace(old, new))
        code, _, err = run_cli("zoo", "train", "tiny-none", "--device", "cpu")
        assert code == 2 and word in err and "Traceback" not in err, err
    card.write_text(text)
