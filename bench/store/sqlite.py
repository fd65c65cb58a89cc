"""Every per-example outcome and every aggregate, with the provenance needed to trust or redo it.

A cell (one model seed under one evaluation with its parameters) is written in a single
transaction: it is in the store whole or not at all, so an interrupted suite resumes by
skipping the cells that exist."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import sqlite3
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from bench.errors import BenchError
from bench.evals.base import EvalOutput, Example, Metric
from bench.evals.reporting import MetricId

SCHEMA = """
CREATE TABLE IF NOT EXISTS cells (
    key TEXT PRIMARY KEY,
    suite TEXT NOT NULL, suite_version INTEGER NOT NULL,
    model TEXT NOT NULL, regularizer TEXT NOT NULL, arch TEXT NOT NULL, dataset TEXT NOT NULL,
    card_hash TEXT NOT NULL, checkpoint_hash TEXT NOT NULL, seed INTEGER NOT NULL,
    evaluation TEXT NOT NULL, eval_version INTEGER NOT NULL, params TEXT NOT NULL, subset_hash TEXT NOT NULL, n_images INTEGER NOT NULL,
    cell_seed INTEGER NOT NULL, notes TEXT NOT NULL, packages TEXT NOT NULL, device TEXT NOT NULL,
    finished_at TEXT NOT NULL, seconds REAL NOT NULL, flags TEXT NOT NULL DEFAULT '[]',
    numerics TEXT NOT NULL DEFAULT 'cpu-fp32', provenance TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS metrics (
    key TEXT NOT NULL REFERENCES cells(key) ON DELETE CASCADE,
    metric TEXT NOT NULL, param REAL, statistic TEXT NOT NULL, value REAL,
    source TEXT NOT NULL DEFAULT '', attack TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS examples (
    key TEXT NOT NULL REFERENCES cells(key) ON DELETE CASCADE,
    metric TEXT NOT NULL, param REAL, example INTEGER NOT NULL, value REAL,
    source TEXT NOT NULL DEFAULT '', statistic TEXT NOT NULL DEFAULT '', attack TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS trainings (
    model TEXT NOT NULL, card_hash TEXT NOT NULL, seed INTEGER NOT NULL, checkpoint_hash TEXT NOT NULL,
    regularizer TEXT NOT NULL, best_epoch INTEGER NOT NULL, layer_weights TEXT NOT NULL, history TEXT NOT NULL,
    target TEXT NOT NULL, seconds REAL NOT NULL, device TEXT NOT NULL, packages TEXT NOT NULL,
    numerics TEXT NOT NULL DEFAULT 'cpu-fp32', provenance TEXT NOT NULL DEFAULT '{}', taps TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (model, card_hash, seed, checkpoint_hash)
);
CREATE INDEX IF NOT EXISTS metrics_key ON metrics(key);
CREATE INDEX IF NOT EXISTS cells_suite ON cells(suite, suite_version);
"""
TRAINING_COLUMNS = (
    "model", "card_hash", "seed", "checkpoint_hash", "regularizer", "best_epoch", "layer_weights", "history",
    "target", "seconds", "device", "packages", "numerics", "provenance", "taps",
)  # fmt: skip
CELL_META = ("regularizer", "arch", "dataset", "n_images", "cell_seed", "packages", "device", "seconds", "provenance")
# value REAL: NULL is NaN (SQLite stores a bound NaN as NULL; a similarity of a constant feature
# map is NaN by design). SCHEMA_VERSION is PRAGMA user_version: 2 made value nullable.
SCHEMA_VERSION = 2
NULLABLE_VALUES = ("metrics", "examples")
# columns added after the first release, with their defaults for older stores
MIGRATIONS = {
    "cells": {"flags": "'[]'", "numerics": "'cpu-fp32'", "provenance": "'{}'"},
    "trainings": {"numerics": "'cpu-fp32'", "provenance": "'{}'", "taps": "'[]'"},
    "metrics": {"source": "''", "attack": "''"},
    "examples": {"source": "''", "statistic": "''", "attack": "''"},
}


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
    numerics: str  # device class and precision (bench.numerics): CPU and CUDA results never mix

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:24]


class ResultStore:
    """``create``: make a new store where there is none (a run); without it a missing store is
    an error (a report or check only reads). Every SQLite problem becomes a one-line error
    naming the file."""

    def __init__(self, path: Path, create: bool = True):
        self.path = Path(path)
        self.created = not self.path.exists()
        if self.created and not create:
            raise BenchError(
                f"{self.path}: no results store here; run the suite first (bench run) or pass --store FILE"
            )
        if self.path.exists() and not self.path.is_file():
            raise BenchError(f"{self.path}: is a folder, not a results store; pass --store FILE")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BenchError(
                f"{self.path}: cannot create its folder ({exc.strerror}); pass --store to a writable place"
            ) from None
        with self._errors("open"):
            self.conn = sqlite3.connect(self.path, timeout=60)  # another bench process may hold the lock
            self.conn.execute("PRAGMA foreign_keys = ON")
            self._ensure_schema()

    @contextlib.contextmanager
    def _errors(self, doing: str):
        try:
            yield
        except sqlite3.DatabaseError as exc:
            what = str(exc)
            if "not a database" in what or "malformed" in what:
                fix = "it is damaged or not a results store; move it away (bench starts a new one) or pass --store NEW"
            elif "readonly" in what or "unable to open" in what:
                fix = "make it (and its folder) writable, or pass --store to a writable place"
            else:
                fix = "check the file and its folder"
            raise BenchError(f"{self.path}: cannot {doing} the results store ({what}); {fix}") from None

    def _ensure_schema(self) -> None:
        """Check the schema version before any work; create or migrate only when something is
        missing or older: a complete store opens read-only."""
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise BenchError(
                f"{self.path}: a results store of schema {version}, newer than this neuroreg-bench reads "
                f"({SCHEMA_VERSION}); upgrade neuroreg-bench or pass --store NEW"
            )
        tables = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        missing = {"cells", "metrics", "examples", "trainings"} - tables
        info = {t: list(self.conn.execute(f"PRAGMA table_info({t})")) for t in (*MIGRATIONS, "cells") if t in tables}
        columns = {t: {r[1] for r in rows} for t, rows in info.items()}
        stale = {t: [c for c in added if c not in columns[t]] for t, added in MIGRATIONS.items() if t in columns}
        not_null = [t for t in NULLABLE_VALUES if any(r[1] == "value" and r[3] for r in info.get(t, []))]
        if not missing and not any(stale.values()) and not not_null and version == SCHEMA_VERSION:
            return
        statements = [part.strip() for part in SCHEMA.split(";") if part.strip()]
        with self._immediate():  # all of it or none: a killed migration loses no row
            for table, added in stale.items():
                for column in added:
                    self.conn.execute(
                        f"ALTER TABLE {table} ADD COLUMN {column} TEXT NOT NULL DEFAULT {MIGRATIONS[table][column]}"
                    )
            for table in not_null:  # SQLite cannot drop a NOT NULL: rebuild the table
                names = ", ".join(r[1] for r in self.conn.execute(f"PRAGMA table_info({table})"))
                self.conn.execute(f"ALTER TABLE {table} RENAME TO {table}_old")
                create = f"CREATE TABLE IF NOT EXISTS {table} ("
                self.conn.execute(next(stmt for stmt in statements if stmt.startswith(create)))
                self.conn.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM {table}_old")
                self.conn.execute(f"DROP TABLE {table}_old")
            for statement in statements:  # missing tables, and the indexes the rebuilt tables lost
                self.conn.execute(statement)
            self.conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def has(self, key: CellKey) -> bool:
        return self.has_digest(key.digest)

    def has_digest(self, digest: str) -> bool:
        with self._errors("read"):
            return self.conn.execute("SELECT 1 FROM cells WHERE key = ?", (digest,)).fetchone() is not None

    def write_cell(
        self,
        key: CellKey,
        *,
        regularizer: str,
        arch: str,
        dataset: str,
        n_images: int,
        cell_seed: int,
        output: EvalOutput,
        packages: str,
        device: str,
        seconds: float,
        provenance: str = "{}",
    ) -> None:
        """One transaction: the cell is stored whole or not at all; a cell already stored (the
        same key computed twice, by two processes) is kept as it is."""
        with self._errors("write"), self._immediate():
            if self.conn.execute("SELECT 1 FROM cells WHERE key = ?", (key.digest,)).fetchone() is not None:
                return
            self.conn.execute(
                "INSERT INTO cells (key, suite, suite_version, model, regularizer, arch, dataset, card_hash, "
                "checkpoint_hash, seed, evaluation, eval_version, params, subset_hash, n_images, cell_seed, notes, "
                "packages, device, finished_at, seconds, flags, numerics, provenance) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    key.digest,
                    key.suite,
                    key.suite_version,
                    key.model,
                    regularizer,
                    arch,
                    dataset,
                    key.card_hash,
                    key.checkpoint_hash,
                    key.seed,
                    key.evaluation,
                    key.eval_version,
                    key.params,
                    key.subset_hash,
                    n_images,
                    cell_seed,
                    json.dumps(output.notes, sort_keys=True),
                    packages,
                    device,
                    datetime.now(UTC).isoformat(timespec="seconds"),
                    seconds,
                    json.dumps(output.flags),
                    key.numerics,
                    provenance,
                ),
            )
            self.conn.executemany(
                "INSERT INTO metrics (key, metric, source, param, statistic, attack, value) VALUES (?,?,?,?,?,?,?)",
                [
                    (key.digest, m.metric.name, m.metric.source, m.param, m.statistic, m.attack, m.value)
                    for m in output.metrics
                ],
            )
            for e in output.examples:
                self.conn.executemany(
                    "INSERT INTO examples (key, metric, source, param, statistic, attack, example, value) "
                    "VALUES (?,?,?,?,?,?,?,?)",
                    (
                        (key.digest, e.metric.name, e.metric.source, e.param, e.statistic, e.attack, i, v)
                        for i, v in enumerate(e.values.tolist())
                    ),
                )

    @contextlib.contextmanager
    def _immediate(self):
        """A write transaction that takes the lock before it reads: two processes storing the same
        cell cannot both see it missing."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.rollback()
            raise
        self.conn.commit()

    def check_writable(self) -> None:
        """A write that changes nothing, rolled back: fails now (read-only file or folder, locked
        store), not after an hour of work."""
        with self._errors("write"):
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                version = self.conn.execute("PRAGMA user_version").fetchone()[0]
                self.conn.execute(f"PRAGMA user_version = {int(version)}")
            finally:
                self.conn.rollback()

    def has_training(self, model: str, card_hash: str, seed: int, checkpoint_hash: str) -> bool:
        with self._errors("read"):
            row = self.conn.execute(
                "SELECT 1 FROM trainings WHERE model = ? AND card_hash = ? AND seed = ? AND checkpoint_hash = ?",
                (model, card_hash, seed, checkpoint_hash),
            ).fetchone()
        return row is not None

    def write_training(self, model: str, card_hash: str, seed: int, ckpt: dict) -> None:
        with self._errors("write"), self._immediate():
            self.conn.execute(
                "INSERT OR REPLACE INTO trainings (model, card_hash, seed, checkpoint_hash, regularizer, best_epoch, "
                "layer_weights, history, target, seconds, device, packages, numerics, provenance, taps) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    model,
                    card_hash,
                    seed,
                    ckpt["state_hash"],
                    ckpt["regularizer"],
                    ckpt["best_epoch"],
                    json.dumps(ckpt["layer_weights"]),
                    json.dumps(ckpt["history"]),
                    ckpt["target"],
                    ckpt["train_seconds"],
                    ckpt["device"],
                    ckpt["packages"],
                    ckpt.get("numerics", "cpu-fp32"),
                    ckpt.get("provenance", "{}"),
                    json.dumps(ckpt.get("taps", [])),
                ),
            )

    def write_training_record(self, row: dict) -> bool:
        """A training record as another store wrote it (bench merge --from): inserted where the
        same (model, card, seed, checkpoint) is not recorded yet; returns whether it was."""
        with self._errors("write"), self._immediate():
            if self.has_training(row["model"], row["card_hash"], row["seed"], row["checkpoint_hash"]):
                return False
            names = ", ".join(TRAINING_COLUMNS)
            self.conn.execute(
                f"INSERT INTO trainings ({names}) VALUES ({', '.join('?' * len(TRAINING_COLUMNS))})",
                tuple(row[c] for c in TRAINING_COLUMNS),
            )
            return True

    def stored_cell(self, digest: str) -> tuple[CellKey, dict, EvalOutput] | None:
        """A stored cell as its computer returned it: key, meta (what write_cell takes beside
        the key) and output, so that it can be written elsewhere (bench export)."""
        row = self.cell(digest)
        if row is None:
            return None
        key = CellKey(**{f: row[f] for f in CellKey.__dataclass_fields__})
        meta = {f: row[f] for f in CELL_META}
        out = EvalOutput(notes=json.loads(row["notes"]), flags=json.loads(row["flags"]))
        out.metrics = [
            Metric(MetricId(m["metric"], m["source"]), m["param"], m["statistic"], m["value"], m["attack"])
            for m in self.cell_metrics(digest)
        ]
        out.examples = [
            Example(metric, param, statistic, torch.as_tensor(values, dtype=torch.float64), attack)
            for (metric, param, statistic, attack), values in self.cell_examples(digest).items()
        ]
        return key, meta, out

    def _dicts(self, sql: str, args: tuple = ()) -> list[dict]:
        with self._errors("read"):
            cursor = self.conn.execute(sql, args)
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row)) for row in cursor]

    def cell(self, digest: str) -> dict | None:
        """A stored cell's row (provenance, notes, flags), or None."""
        return next(iter(self._dicts("SELECT * FROM cells WHERE key = ?", (digest,))), None)

    def cell_metrics(self, digest: str) -> list[dict]:
        """A stored cell's numbers, in the order they were written."""
        rows = self._dicts(
            "SELECT metric, source, param, statistic, attack, value FROM metrics WHERE key = ? ORDER BY rowid",
            (digest,),
        )
        return [{**r, "value": math.nan if r["value"] is None else r["value"]} for r in rows]

    def trainings(self, checkpoints: set[tuple[str, str]]) -> list[dict]:
        """Training records of the given (model, checkpoint hash) pairs."""
        rows = self._dicts("SELECT * FROM trainings ORDER BY rowid")
        return [r for r in rows if (r["model"], r["checkpoint_hash"]) in checkpoints]

    def newest_training(self, model: str, card_hash: str, seed: int, numerics: str) -> dict | None:
        """The last recorded training of a card recipe and seed: where a report finds the
        checkpoint it shows when the workdir that trained it is not at hand."""
        rows = self._dicts(
            "SELECT * FROM trainings WHERE model = ? AND card_hash = ? AND seed = ? AND numerics = ? "
            "ORDER BY rowid DESC LIMIT 1",
            (model, card_hash, seed, numerics),
        )
        return rows[0] if rows else None

    def evaluated_weights(self, model: str, card_hash: str) -> str | None:
        """The weights hash an evaluation recorded for an external card (its card hash holds the
        file's sha256): how a read-only command finds its cells without loading the model."""
        rows = self._dicts(
            "SELECT checkpoint_hash FROM cells WHERE model = ? AND card_hash = ? ORDER BY rowid DESC LIMIT 1",
            (model, card_hash),
        )
        return rows[0]["checkpoint_hash"].split("+")[0] if rows else None

    def cell_examples(self, digest: str) -> dict[tuple, np.ndarray]:
        """A stored cell's per-image outcomes by (MetricId, param, statistic, attack), in image order."""
        grouped: dict[tuple, list[float]] = {}
        for metric, source, param, statistic, attack, value in self.conn.execute(
            "SELECT metric, source, param, statistic, attack, value FROM examples WHERE key = ? "
            "ORDER BY metric, source, param, statistic, attack, example",
            (digest,),
        ):
            grouped.setdefault((MetricId(metric, source), param, statistic, attack), []).append(
                math.nan if value is None else value
            )
        return {k: np.asarray(v, float) for k, v in grouped.items()}
