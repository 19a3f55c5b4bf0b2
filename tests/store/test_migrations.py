"""Alembic migrations: from empty, from a database made before Alembic, twice, concurrently.

`data/legacy-*.sql` are databases as llmops made them before Alembic (its own
`schema_migrations` and `eval_schema_migrations` tables), dumped once from that code:
they are upgraded here by today's code without losing a row.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from llmops.lineage import Lineage
from llmops.store import VERSION_TABLE, Store, StoreError, metadata
from llmops.store.migrations.runner import current_revisions, head_revisions, migrate
from tests.store.conftest import row

DATA = Path(__file__).parent / "data"
HEADS = {"store_0004", "eval_0001", "monitor_0001"}
LEGACY_VERSION_TABLES = {"schema_migrations", "eval_schema_migrations"}
PRIMARY_KEYS = {
    "request_log": ("id",), "feedback": ("request_id", "reviewer"), "feedback_history": ("id",),
    "api_keys": ("id",), "eval_outputs": ("chain_hash", "index_version", "item_hash"),
    "eval_scores": ("output_hash", "metric_key"), "evaluations": ("id",),
}
# what the legacy dumps hold, table by table
LEGACY_V2_COUNTS = {"request_log": 6, "feedback": 4, "feedback_history": 5, "api_keys": 3,
                    "eval_outputs": 3, "eval_scores": 3, "evaluations": 2}
# request_log.index_version: the strings the old code wrote, and the integers they become
INDEX_VERSIONS = {"7": 7, "12": 12, "legacy-v1": None, None: None}


def load(url: str, dump: str) -> None:
    """A legacy database from its dump (sqlite3 `.dump` text, or pg_dump's SQL)."""
    text = (DATA / dump).read_text()
    u = sa.make_url(url)
    if u.get_backend_name() == "sqlite":
        with sqlite3.connect(u.database or "") as conn:
            conn.executescript(text)
        return
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(text)
    engine.dispose()


def snapshot(url: str) -> dict[str, dict[tuple[Any, ...], dict[str, Any]]]:
    """Every row of the data tables, by table and primary key."""
    engine = sa.create_engine(url)
    md = sa.MetaData()
    present = set(sa.inspect(engine).get_table_names())
    md.reflect(engine, only=[t for t in PRIMARY_KEYS if t in present])
    out: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = {}
    with engine.connect() as conn:
        for name, table in md.tables.items():
            out[name] = {tuple(r[k] for k in PRIMARY_KEYS[name]): dict(r)
                         for r in conn.execute(sa.select(table)).mappings()}
    engine.dispose()
    return out


def describe(url: str) -> dict[str, Any]:
    """The data tables' columns, keys and indexes, as the database reports them."""
    engine = sa.create_engine(url)
    insp = sa.inspect(engine)
    out: dict[str, Any] = {}
    for t in sorted(set(insp.get_table_names()) - LEGACY_VERSION_TABLES - {VERSION_TABLE}):
        out[t] = {
            "columns": [(c["name"], str(c["type"]), c["nullable"], c.get("default"))
                        for c in insp.get_columns(t)],
            "pk": insp.get_pk_constraint(t)["constrained_columns"],
            "unique": sorted(tuple(u["column_names"]) for u in insp.get_unique_constraints(t)),
            "indexes": sorted(
                (i["name"], tuple(i["column_names"]), bool(i["unique"]),
                 str(next(iter((i.get("dialect_options") or {}).values()), "")))
                for i in insp.get_indexes(t)),
        }
    engine.dispose()
    return out


def drop_all(url: str) -> None:
    engine = sa.create_engine(url)
    md = sa.MetaData()
    md.reflect(engine)
    md.drop_all(engine)
    engine.dispose()


def version_of(url: str, table: str) -> int:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        v = conn.execute(sa.text(f"SELECT MAX(version) FROM {table}")).scalar()
    engine.dispose()
    return int(v)


def test_a_database_made_before_alembic_is_adopted_without_losing_a_row(store_url: str) -> None:
    dialect = sa.make_url(store_url).get_backend_name()
    load(store_url, f"legacy-v2.{'sqlite' if dialect == 'sqlite' else 'postgresql'}.sql")
    before = snapshot(store_url)
    assert {t: len(rows) for t, rows in before.items()} == LEGACY_V2_COUNTS

    store = Store(store_url)
    assert current_revisions(store.engine) == HEADS == head_revisions()
    after = snapshot(store_url)
    assert after.keys() == before.keys()
    for table, rows in before.items():
        assert after[table].keys() == rows.keys(), table
        for key, old in rows.items():
            new = dict(after[table][key])
            if table == "request_log":
                assert new.pop("index_version") == INDEX_VERSIONS[old.pop("index_version")]
            assert new == old, (table, key)
    if dialect == "sqlite":
        path = sa.make_url(store_url).database or ""
        with sqlite3.connect(path) as conn:
            kinds = {r[0] for r in conn.execute("SELECT typeof(index_version) FROM request_log")}
        assert kinds == {"integer", "null"}
    # an older llmops reads a version past its own and refuses this database
    assert version_of(store_url, "schema_migrations") == 3
    assert version_of(store_url, "eval_schema_migrations") == 2

    # the adopted log works: old rows voted on, new rows typed
    vote = store.add_feedback("req-2", reviewer="bob", rating="down")
    assert (vote.variant, vote.chain_version) == ("staging", 4)
    store.log_request(row("new", lineage=Lineage(index_version=13), index_version=13))
    assert store.get_request("new")["index_version"] == 13  # type: ignore[index]
    assert store.find_key("a" * 64) is not None and store.find_key("c" * 64) is None
    assert store.get_evaluation("ev4")["judge"] == "openai:gpt-4o-mini"
    assert store.eval_outputs("chainhash1", 7, ["item-a", "item-b"]).keys() == {
        "item-a", "item-b"}
    old = store.get_request("req-1")
    assert old is not None and Lineage.from_dict(old["lineage"]).backend == "local"
    store.close()
    assert migrate(sa.create_engine(store_url)) == []


def test_a_first_release_log_gets_every_later_revision(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'v1.db'}"
    load(url, "legacy-v1.sqlite.sql")
    before = snapshot(url)
    store = Store(url)
    assert current_revisions(store.engine) == HEADS
    names = {i["name"]: i for i in sa.inspect(store.engine).get_indexes("request_log")}
    assert "ix_request_log_endpoint" not in names
    assert str(names["ix_request_log_shadow_of"]["dialect_options"]["sqlite_where"]) == (
        "shadow_of IS NOT NULL")
    got = store.get_request("v1-a")
    assert got is not None and got["index_version"] == 2
    assert [f["comment"] for f in store.list_feedback(request_id="v1-a")] == ["fine"]
    store.add_evaluation({"id": "e", "created_at": 1.0, "model": "chain.x", "version": 1,
                          "dataset": "qa", "dataset_version": "v", "n_items": 0, "failures": 0,
                          "summary": {}, "chain_calls": 0, "metric_calls": 0})
    store.close()
    after = snapshot(url)
    for table in before:
        assert len(after[table]) == len(before[table]), table
    assert version_of(url, "schema_migrations") == 3


def test_revisions_reproduce_the_schema_of_the_release_before_alembic(store_url: str) -> None:
    """store_0001 + store_0002 + eval_0001 make exactly the tables the old code made."""
    dialect = sa.make_url(store_url).get_backend_name()
    load(store_url, f"legacy-v2.{'sqlite' if dialect == 'sqlite' else 'postgresql'}.sql")
    legacy = describe(store_url)
    assert set(legacy) == set(PRIMARY_KEYS)
    drop_all(store_url)
    engine = sa.create_engine(store_url)
    assert migrate(engine, "store_0002") == ["store_0001", "store_0002"]
    assert migrate(engine, "eval_0001") == ["eval_0001"]
    engine.dispose()
    assert describe(store_url) == legacy


def test_a_migrated_database_matches_the_tables_the_code_queries(store_url: str) -> None:
    """Empty to head: every table, column, type and index as `schema.py` declares them."""
    engine = sa.create_engine(store_url)
    assert migrate(engine) == ["store_0001", "store_0002", "store_0003", "store_0004",
                               "monitor_0001", "eval_0001"]
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE,
                                                     "compare_type": True})
        assert compare_metadata(ctx, metadata) == []
    engine.dispose()


def test_migrations_run_once_and_cost_one_read_at_head(store_url: str) -> None:
    Store(store_url).close()
    engine = sa.create_engine(store_url)
    statements: list[str] = []
    sa.event.listen(engine, "before_cursor_execute",
                    lambda _c, _cur, sql, *_a: statements.append(sql.strip().split()[0].upper()))
    assert migrate(engine) == [] and migrate(engine) == []
    assert not {"CREATE", "ALTER", "DROP", "INSERT", "UPDATE", "DELETE"} & set(statements)
    assert not any("ADVISORY" in s for s in statements)
    assert current_revisions(engine) == HEADS
    engine.dispose()


def test_stores_opening_at_once_migrate_once(store_url: str) -> None:
    """Two processes (here threads) open one new store: the lock lets one migrate it."""
    applied: list[list[str]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def open_one() -> None:
        engine = sa.create_engine(store_url)
        try:
            barrier.wait()
            applied.append(migrate(engine))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(len(a) for a in applied) == [0, 0, 0, 6]


def test_a_database_newer_than_the_code_is_refused(store_url: str) -> None:
    Store(store_url).close()
    engine = sa.create_engine(store_url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE {VERSION_TABLE} SET version_num = 'store_9999' "
                             "WHERE version_num = 'store_0004'"))
    engine.dispose()
    with pytest.raises(StoreError, match=r"schema revision store_9999, newer than this llmops"):
        Store(store_url)


def test_a_legacy_database_newer_than_the_code_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    load(url, "legacy-v1.sqlite.sql")
    with sqlite3.connect(tmp_path / "r.db") as conn:
        conn.execute("INSERT INTO schema_migrations VALUES (7, 0)")
    with pytest.raises(StoreError, match=r"schema_migrations is at version 7, newer than"):
        Store(url)
