"""Cell files and stores are data from outside: a forged or malformed cell file is named and
refused while the rest merge; NaN survives the store; the schema version is checked before any
work; numbers edited into a store are flagged on the leaderboard."""

from __future__ import annotations

import json
import math
import sqlite3

import pytest
import torch
from conftest import run_cli

from bench.errors import BenchError
from bench.evals.base import EvalOutput
from bench.evals.reporting import MetricId
from bench.store import CellKey, ResultStore
from bench.store.cellfiles import cells_dir, encode, merge
from bench.store.sqlite import SCHEMA, SCHEMA_VERSION

NOISE = MetricId("noise-gaussian")
META = {
    "regularizer": "none",
    "arch": "resnet18",
    "dataset": "fmnist-mini",
    "n_images": 4,
    "cell_seed": 7,
    "packages": "{}",
    "device": "cpu",
    "seconds": 1.5,
    "provenance": "{}",
}


def key_of(model: str = "m", suite: str = "s") -> CellKey:
    return CellKey(suite, 1, model, "c" * 16, "w" * 16, 0, "noise", 1, "{}", "h" * 16, "cpu-fp32")


def output(correct=(1, 0, 1, 1)) -> EvalOutput:
    out = EvalOutput()
    out.accuracy(NOISE, 0.0, torch.tensor(correct))
    return out


def write(workdir, name: str, doc: dict | str) -> None:
    cells_dir(workdir).mkdir(parents=True, exist_ok=True)
    text = doc if isinstance(doc, str) else json.dumps(doc)
    (cells_dir(workdir) / f"{name}.json").write_text(text)


def forged(model: str, change) -> tuple[str, dict]:
    """A cell file whose content ``change`` edits after encoding (digest kept consistent)."""
    key = key_of(model)
    doc = json.loads(encode(key, dict(META), output()))
    change(doc)
    try:
        doc["digest"] = CellKey(**doc["key"]).digest
    except TypeError:  # a key with a field CellKey does not have
        pass
    return doc["digest"], doc


def set_metric(value):
    def change(doc):
        doc["metrics"][0][5] = value

    return change


CASES = {
    "accuracy 5": (set_metric(5.0), "outside [0, 1]"),
    "accuracy -3": (set_metric(-3.0), "outside [0, 1]"),
    "accuracy inf": (set_metric("inf"), "outside [0, 1]"),
    "accuracy not the mean": (set_metric(0.5), "not the mean"),
    "examples cut": (lambda d: d["examples"][0].__setitem__(5, [1.0]), "1 per-image outcomes for 4 images"),
    "extra meta key": (lambda d: d["meta"].__setitem__("extra", 1), "meta.extra"),
    "missing meta key": (lambda d: d["meta"].pop("n_images"), "meta.n_images"),
    "huge integer": (lambda d: d["meta"].__setitem__("cell_seed", 10**30), "meta.cell_seed"),
    "string value": (set_metric("oops"), "not a number"),
    "extra key field": (lambda d: d["key"].__setitem__("extra", 1), "key.extra"),
}


def test_forged_and_malformed_cell_files_are_named_and_skipped_and_the_rest_merged(tmp_path):
    good = key_of("good")
    write(tmp_path, good.digest, encode(good, dict(META), output()))
    names = {}
    for label, (change, _) in CASES.items():
        name, doc = forged(label.replace(" ", "-"), change)
        names[label] = name
        write(tmp_path, name, doc)
    write(tmp_path, "f" * 24, "{not json")
    with ResultStore(tmp_path / "results.sqlite") as store:
        merged, present, bad = merge(store, tmp_path)
        assert merged == 1 and store.has(good)
        assert len(bad) == len(CASES) + 1
        for label, (_, why) in CASES.items():
            line = next(b for b in bad if b.startswith(names[label]))
            assert why in line, (label, line)
        # refused files stay where they are; a second merge refuses them again, merges nothing
        assert merge(store, tmp_path)[:2] == (0, 1)


def test_a_cell_outside_the_plan_is_refused(tmp_path):
    other = key_of("other", suite="another-suite")
    write(tmp_path, other.digest, encode(other, dict(META), output()))
    planned = key_of("planned")
    write(tmp_path, planned.digest, encode(planned, dict(META), output()))
    expected = {planned.digest: {k: META[k] for k in ("regularizer", "arch", "dataset", "n_images")}}
    with ResultStore(tmp_path / "results.sqlite") as store:
        merged, _, bad = merge(store, tmp_path, expected)
        assert merged == 1 and not store.has(other)
        assert "not a cell of this plan (suite 'another-suite'" in bad[0]
    wrong = {planned.digest: {**expected[planned.digest], "n_images": 5}}
    with ResultStore(tmp_path / "other.sqlite") as store:
        assert "n_images differ" in merge(store, tmp_path, wrong)[2][-1]


def test_nan_is_stored_and_read_back_as_nan(tmp_path):
    out = EvalOutput()
    out.accuracy(NOISE, 0.0, torch.tensor([1, 0]))
    out.metrics.append(type(out.metrics[0])(MetricId("similarity"), None, "r", math.nan))
    with ResultStore(tmp_path / "s.sqlite") as store:
        store.write_cell(key_of(), output=out, **{**META, "n_images": 2})
        values = {m["statistic"]: m["value"] for m in store.cell_metrics(key_of().digest)}
    assert values["accuracy"] == 0.5 and math.isnan(values["r"])


def test_an_older_store_is_migrated_and_a_newer_one_refused_before_any_work(tmp_path):
    old = tmp_path / "old.sqlite"
    conn = sqlite3.connect(old)
    conn.executescript(SCHEMA.replace("value REAL,", "value REAL NOT NULL,"))
    conn.execute(
        "INSERT INTO cells (key, suite, suite_version, model, regularizer, arch, dataset, card_hash, "
        "checkpoint_hash, seed, evaluation, eval_version, params, subset_hash, n_images, cell_seed, notes, "
        "packages, device, finished_at, seconds) VALUES "
        "('k','s',1,'m','none','a','d','c','w',0,'e',1,'{}','h',1,0,'{}','{}','cpu','t',1.0)"
    )
    conn.execute("INSERT INTO metrics (key, metric, statistic, value) VALUES ('k', 'clean', 'accuracy', 0.75)")
    conn.commit()
    conn.close()
    with ResultStore(old) as store:
        assert store.cell_metrics("k")[0]["value"] == 0.75  # kept
        nullable = [r for r in store.conn.execute("PRAGMA table_info(metrics)") if r[1] == "value"][0][3] == 0
        assert nullable and store.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    newer = tmp_path / "newer.sqlite"
    conn = sqlite3.connect(newer)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(BenchError, match=f"schema {SCHEMA_VERSION + 1}, newer"):
        ResultStore(newer)


@pytest.mark.slow
def test_numbers_edited_into_the_store_are_flagged_on_the_leaderboard(cards):
    assert run_cli("run", "tiny", "--device", "cpu")[0] == 0
    conn = sqlite3.connect(cards / ".bench" / "results.sqlite")
    key = conn.execute("SELECT key FROM cells WHERE model = 'tiny-none' AND evaluation = 'clean'").fetchone()[0]
    conn.execute("UPDATE metrics SET value = 7.5 WHERE key = ? AND statistic = 'accuracy'", (key,))
    key = conn.execute("SELECT key FROM cells WHERE model = 'tiny-pixel' AND evaluation = 'noise'").fetchone()[0]
    conn.execute("UPDATE metrics SET value = 0.01 WHERE key = ? AND statistic = 'accuracy' AND param = 0", (key,))
    conn.commit()
    conn.close()
    code, out, err = run_cli("report", "tiny", "--device", "cpu")
    assert code == 0, err
    board = (cards / "reports" / "tiny" / "leaderboard.md").read_text()
    flags = board.split("## Sanity flags")[1].split("##")[0]
    assert "tiny-none seed 0: clean accuracy 7.5 is outside [0, 1]" in flags
    assert "tiny-pixel seed 0: noise-gaussian accuracy at 0 (0.0100) differs from the clean accuracy" in flags
    assert "tiny-pixel seed 0: noise-gaussian per-image outcomes (48) disagree" in flags
