"""The SQLite engine: WAL, the durability level from the URL."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmops.store import Store, StoreError


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    s = Store(f"sqlite:///{tmp_path / 'r.db'}")
    with s.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    assert s.readable() and s.state().ok
    s.close()


@pytest.mark.parametrize(("query", "level"), [("", 1), ("?synchronous=full", 2),
                                              ("?synchronous=extra", 3)])
def test_sqlite_durability_level_comes_from_the_url(tmp_path: Path, query: str, level: int) -> None:
    s = Store(f"sqlite:///{tmp_path / 'r.db'}{query}")
    with s.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == level
    s.close()
    with pytest.raises(StoreError, match="synchronous must be"):
        Store(f"sqlite:///{tmp_path / 'r.db'}?synchronous=off")

