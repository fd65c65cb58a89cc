"""Every per-example outcome and every aggregate, with the provenance needed to trust or redo it.

A cell (one model seed under one evaluation with its parameters) is written in a single
transaction: it is in the store whole or not at all, so an interrupted suite resumes by
skipping the cells that exist."""
from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import numpy as np

from bench.evals.base import EvalOutput

SCHEMA = """
CREATE TABLE IF NOT EXISTS cells (
    key TEXT PRIMARY KEY,
    suite TEXT NOT NULL, suite_version INTEGER NOT NULL,
    model TEXT NOT NULL, regularizer TEXT NOT NULL, arch TEXT NOT NULL, dataset TEXT NOT NULL,
    card_hash TEXT NOT NULL, checkpoint_hash TEXT NOT NULL, seed INTEGER NOT NULL,
    evaluation TEXT NOT NULL, eval_version INTEGER NOT NULL, params TEXT NOT NULL, subset_hash TEXT NOT NULL, n_images INTEGER NOT NULL,
    cell_seed INTEGER NOT NULL, notes TEXT NOT NULL, packages TEXT NOT NULL, device TEXT NOT NULL,
    finished_at TEXT NOT NULL, seconds REAL NOT NULL, flags TEXT NOT NULL DEFAULT '[]'
);
CREATE TABLE IF NOT EXISTS metrics (
    key TEXT NOT NULL REFERENCES cells(key) ON DELETE CASCADE,
    metric TEXT NOT NULL, param REAL, statistic TEXT NOT NULL, value REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS examples (
    key TEXT NOT NULL REFERENCES cells(key) ON DELETE CASCADE,
    metric TEXT NOT NULL, param REAL, example INTEGER NOT NULL, value REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS trainings (
    model TEXT NOT NULL, card_hash TEXT NOT NULL, seed INTEGER NOT NULL, checkpoint_hash TEXT NOT NULL,
    regularizer TEXT NOT NULL, best_epoch INTEGER NOT NULL, layer_weights TEXT NOT NULL, history TEXT NOT NULL,
    target TEXT NOT NULL, seconds REAL NOT NULL, device TEXT NOT NULL, packages TEXT NOT NULL,
    PRIMARY KEY (model, card_hash, seed, checkpoint_hash)
);
CREATE INDEX IF NOT EXISTS metrics_key ON metrics(key);
CREATE INDEX IF NOT EXISTS cells_suite ON cells(suite, suite_version);
"""


@dataclass(frozen=True)
class CellKey:
    suite: str
    suite_version: int
    model: str
    card_hash: str
    checkpoint_hash: str
    seed: int
    evaluation: str
    eval_version: int
    params: str  # canonical JSON
    subset_hash: str

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:24]


class ResultStore:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(self.path)
        self.conn.execute("PRAGMA foreign_keys = ON")
        with self.conn:
            self.conn.executescript(SCHEMA)
            columns = {r[1] for r in self.conn.execute("PRAGMA table_info(cells)")}
            if "flags" not in columns:  # stores written before sanity flags were stored
                self.conn.execute("ALTER TABLE cells ADD COLUMN flags TEXT NOT NULL DEFAULT '[]'")

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "ResultStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def has(self, key: CellKey) -> bool:
        return self.conn.execute("SELECT 1 FROM cells WHERE key = ?", (key.digest,)).fetchone() is not None

    def write_cell(self, key: CellKey, *, regularizer: str, arch: str, dataset: str, n_images: int,
                   cell_seed: int, output: EvalOutput, packages: str, device: str, seconds: float) -> None:
        with self.conn:  # one transaction: the cell is stored whole or not at all
            self.conn.execute(
                "INSERT OR REPLACE INTO cells VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (key.digest, key.suite, key.suite_version, key.model, regularizer, arch, dataset,
                 key.card_hash, key.checkpoint_hash, key.seed, key.evaluation, key.eval_version, key.params, key.subset_hash,
                 n_images, cell_seed, json.dumps(output.notes, sort_keys=True), packages, device,
                 datetime.now(timezone.utc).isoformat(timespec="seconds"), seconds, json.dumps(output.flags)))
            self.conn.executemany("INSERT INTO metrics VALUES (?,?,?,?,?)",
                                  [(key.digest, m.name, m.param, m.statistic, m.value) for m in output.metrics])
            for metric, param, values in output.examples:
                self.conn.executemany(
                    "INSERT INTO examples VALUES (?,?,?,?,?)",
                    ((key.digest, metric, param, i, v) for i, v in enumerate(values.tolist())))

    def write_training(self, model: str, card_hash: str, seed: int, ckpt: dict) -> None:
        with self.conn:
            self.conn.execute(
                "INSERT OR REPLACE INTO trainings VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (model, card_hash, seed, ckpt["state_hash"], ckpt["regularizer"], ckpt["best_epoch"],
                 json.dumps(ckpt["layer_weights"]), json.dumps(ckpt["history"]), ckpt["target"],
                 ckpt["train_seconds"], ckpt["device"], ckpt["packages"]))

    def rows(self, sql: str, args: tuple = ()) -> Iterator[sqlite3.Row]:
        self.conn.row_factory = sqlite3.Row
        try:
            yield from self.conn.execute(sql, args)
        finally:
            self.conn.row_factory = None

    def cell_examples(self, digest: str) -> dict[tuple[str, float | None], np.ndarray]:
        """A stored cell's per-image outcomes, by (metric, param), in image order."""
        grouped: dict[tuple[str, float | None], list[float]] = {}
        for metric, param, value in self.conn.execute(
                "SELECT metric, param, value FROM examples WHERE key = ? ORDER BY metric, param, example", (digest,)):
            grouped.setdefault((metric, param), []).append(value)
        return {k: np.asarray(v, float) for k, v in grouped.items()}
