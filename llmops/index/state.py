"""The refresh job's own record of an index: versions, manifest, dirty flag.

One SQLite file per collection under `HOME/index/` (WAL, so `status` reads
while a refresh writes):

- `versions`: every index version with its stats and MLflow run id;
- `chunks`: the manifest of the current version (chunk id, document id, record hash);
- `meta`: `dirty` (a refresh began writing and has not committed),
  `collection_id` (the Chroma collection the manifest describes), `generation`.

Committing a refresh is one transaction over all three.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS versions (
    version INTEGER PRIMARY KEY,
    created_at TEXT NOT NULL,
    full INTEGER NOT NULL,
    stats TEXT NOT NULL,
    mlflow_run_id TEXT
);
CREATE TABLE IF NOT EXISTS chunks (
    id TEXT PRIMARY KEY,
    doc_id TEXT NOT NULL,
    hash TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
"""


@dataclass(frozen=True)
class VersionRecord:
    """One row of the version history."""

    version: int
    created_at: str
    full: bool
    stats: dict[str, Any]
    mlflow_run_id: str | None


class IndexState:
    """The state file of one collection."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, timeout=30, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        if self._db.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
            with self.transaction():
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    @classmethod
    def for_collection(cls, home: Path, collection: str) -> IndexState:
        return cls(home / "index" / f"{collection}.sqlite")

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- meta --------------------------------------------------------------
    def get(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set(self, key: str, value: str, db: sqlite3.Connection | None = None) -> None:
        (db or self._db).execute(
            "INSERT INTO meta(key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    @property
    def dirty(self) -> bool:
        return self.get("dirty") == "1"

    def mark_dirty(self) -> None:
        """Say, before the first write to the collection, that it may now differ from the manifest."""
        self.set("dirty", "1")

    # -- manifest ----------------------------------------------------------
    def manifest(self) -> dict[str, tuple[str, str]]:
        """chunk id -> (document id, record hash) of the current version."""
        return {r[0]: (r[1], r[2]) for r in self._db.execute("SELECT id, doc_id, hash FROM chunks")}

    @staticmethod
    def apply_manifest(
        db: sqlite3.Connection,
        upserts: Iterable[tuple[str, str, str]],
        deletes: Iterable[str],
    ) -> None:
        db.executemany(
            "INSERT INTO chunks(id, doc_id, hash) VALUES (?, ?, ?) ON CONFLICT(id) DO UPDATE "
            "SET doc_id = excluded.doc_id, hash = excluded.hash",
            upserts,
        )
        db.executemany("DELETE FROM chunks WHERE id = ?", ((i,) for i in deletes))

    # -- versions ----------------------------------------------------------
    def latest(self) -> VersionRecord | None:
        row = self._db.execute(
            "SELECT version, created_at, full, stats, mlflow_run_id FROM versions "
            "ORDER BY version DESC LIMIT 1"
        ).fetchone()
        return None if row is None else _record(row)

    def history(self, limit: int = 20) -> list[VersionRecord]:
        rows = self._db.execute(
            "SELECT version, created_at, full, stats, mlflow_run_id FROM versions "
            "ORDER BY version DESC LIMIT ?",
            (limit,),
        )
        return [_record(r) for r in rows]

    def unlogged(self) -> list[VersionRecord]:
        """Versions whose MLflow run is not logged yet (logging failed or was killed)."""
        rows = self._db.execute(
            "SELECT version, created_at, full, stats, mlflow_run_id FROM versions "
            "WHERE mlflow_run_id IS NULL ORDER BY version"
        )
        return [_record(r) for r in rows]

    @staticmethod
    def add_version(
        db: sqlite3.Connection, version: int, created_at: str, full: bool, stats: dict[str, Any]
    ) -> None:
        db.execute(
            "INSERT INTO versions(version, created_at, full, stats) VALUES (?, ?, ?, ?)",
            (version, created_at, int(full), json.dumps(stats, sort_keys=True)),
        )

    def set_run_id(self, version: int, run_id: str) -> None:
        self._db.execute("UPDATE versions SET mlflow_run_id = ? WHERE version = ?", (run_id, version))


def _record(row: tuple[Any, ...]) -> VersionRecord:
    return VersionRecord(int(row[0]), str(row[1]), bool(row[2]), json.loads(row[3]), row[4])
