"""The medallion as Delta Lake tables: bronze (raw batches), silver (checked rows),
quarantine (bad rows and their reasons) and gold (the feature table, keyed by entity and
event time); beside them, the labels as they become known.

Each refresh is incremental: silver reads only the bronze versions after the one it has
consumed, gold only the silver versions after its own mark, and each commit records in
its metadata (`llmops.consumed`) the upstream version it consumed. A refresh killed
between two tables leaves every table at a complete version (Delta's transaction log),
and the next refresh picks up from each table's own mark, so nothing is lost or
processed twice.

Reads go through `pyarrow.parquet` over the files of a version (`DeltaTable.file_uris`):
deltalake's own scanner (`to_pandas`, `to_pyarrow_dataset`) leaves a native thread pool
running that sometimes aborts the interpreter at exit ("terminate called without an
active exception", delta-io/delta-rs#2184); writes, history and file lists do not.
Our tables are plain appends (no deletion vectors, no column mapping), which the file
list reads exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from llmops.tabular.quality import check
from llmops.tabular.source import FEATURES, KEY

CONSUMED = "llmops.consumed"  # commit metadata: the upstream version this commit consumed
LAYERS = ("bronze", "silver", "quarantine", "gold", "labels")


# A checkpoint every 10 commits: opening a table replays at most 10 commit files after
# the newest checkpoint, so a refresh costs the same on a table of 10 days or of 1,000.
TABLE_CONFIG = {"delta.checkpointInterval": "10"}


def _table(path: Path, version: int | None = None) -> Any:
    """The Delta table at `path` (at `version`), or None if it does not exist yet."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        return DeltaTable(str(path), version=version)
    except TableNotFoundError:
        return None


def version_of(path: Path) -> int | None:
    """The table's newest version, or None if it does not exist yet."""
    dt = _table(path)
    return None if dt is None else int(dt.version())


def read(path: Path, version: int | None = None, *, columns: list[str] | None = None
         ) -> pd.DataFrame:
    """The table at `version` (default: newest) as a DataFrame; empty if it does not exist.
    `columns`: only these (a narrow read of a wide table)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    dt = _table(path, version)
    if dt is None:
        return pd.DataFrame()
    schema = pa.schema(dt.schema().to_arrow())  # deltalake's arro3 schema, as pyarrow's
    files = dt.file_uris()
    if columns is not None:
        schema = pa.schema([schema.field(c) for c in columns])
    if not files:
        return schema.empty_table().to_pandas()
    return pq.read_table(files, schema=schema, columns=columns).to_pandas()


def consumed(path: Path) -> int:
    """The upstream version the table's newest commit consumed (-1: none yet)."""
    dt = _table(path)
    for commit in dt.history(1) if dt is not None else []:
        if CONSUMED in commit:
            return int(commit[CONSUMED])
    return -1


def append(path: Path, frame: pd.DataFrame, *, upstream: int | None = None,
           operation: str = "", meta: dict[str, str] | None = None) -> int:
    """Append rows in one commit (its metadata names the upstream version); the version."""
    from deltalake import CommitProperties, write_deltalake

    meta = {"llmops.operation": operation, **(meta or {})}
    if upstream is not None:
        meta[CONSUMED] = str(upstream)
    dt = _table(path)
    # a non-default index would become a column of its own
    write_deltalake(str(path) if dt is None else dt, frame.reset_index(drop=True),
                    mode="append", configuration=TABLE_CONFIG if dt is None else None,
                    commit_properties=CommitProperties(custom_metadata=meta))
    if dt is None:
        v = version_of(path)
        assert v is not None
        return v
    dt.update_incremental()
    return int(dt.version())


@dataclass
class RefreshReport:
    bronze_version: int | None
    silver_rows: int  # added now
    quarantined: int
    gold_rows: int
    versions: dict[str, int | None]


class Medallion:
    """The four tables of one feature pipeline, under `root`."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.paths = {layer: self.root / layer for layer in LAYERS}

    def ingest(self, batch: pd.DataFrame, *, source: str) -> int:
        """A raw batch into bronze, as it came (every column as text, plus its source)."""
        raw = batch.reset_index(drop=True).astype("string").assign(
            _source=source, _ingested_at=pd.Timestamp.now(tz="UTC"),
            _row=range(len(batch)))  # the row's place in its batch: Delta's writer may reorder
        return append(self.paths["bronze"], raw, operation=f"ingest {source}")

    def ingest_labels(self, labels: pd.DataFrame, *, source: str) -> int | None:
        """Labels known now (entity_id, label, label_time) into the labels table."""
        if labels.empty:
            return version_of(self.paths["labels"])
        return append(self.paths["labels"], labels, operation=f"labels {source}")

    def ingested(self) -> list[str]:
        """The sources of the batches in bronze, oldest first."""
        from deltalake import DeltaTable

        if version_of(self.paths["bronze"]) is None:
            return []
        ops = [c.get("llmops.operation", "") for c in DeltaTable(
            str(self.paths["bronze"])).history()]
        return [op.removeprefix("ingest ") for op in reversed(ops) if op.startswith("ingest ")]

    def refresh(self) -> RefreshReport:
        """Bring silver and quarantine up to bronze, then gold up to silver."""
        bronze = self.paths["bronze"]
        head = version_of(bronze)
        added = bad = gold_added = 0
        if head is not None and consumed(self.paths["silver"]) < head:
            added, bad = self._silver(head)
        silver_head = version_of(self.paths["silver"])
        if silver_head is not None and consumed(self.paths["gold"]) < silver_head:
            gold_added = self._gold(silver_head)
        return RefreshReport(head, added, bad, gold_added,
                             {k: version_of(p) for k, p in self.paths.items()})

    def _silver(self, head: int) -> tuple[int, int]:
        silver, quarantine = self.paths["silver"], self.paths["quarantine"]
        since, q_mark = consumed(silver), consumed(quarantine)
        # rows up to the quarantine's own mark were quarantined by a refresh that was
        # killed before silver committed: checked again, not quarantined twice
        order = ["_ingested_at", "_row"]  # as the batches came, whatever the files' order
        rows = new_rows(self.paths["bronze"], since, head)
        rows = rows.sort_values(order).reset_index(drop=True) if len(rows) else rows
        fresh = new_rows(self.paths["bronze"], max(since, q_mark), head)
        rows = rows.assign(_new=rows["_ingested_at"].isin(set(fresh["_ingested_at"]))
                           if len(fresh) else False) if len(rows) else rows
        # duplicates across batches: the keys of silver's files whose times overlap the
        # batch's (the files' statistics in the Delta log), of the batch's entities
        times = pd.to_datetime(rows["event_time"], utc=True, errors="coerce", format="ISO8601"
                               ) if "event_time" in rows else pd.Series([], dtype=object)
        known = keys_between(silver, times.min(), times.max()) if times.notna().any() \
            else pd.DataFrame()
        if len(known) and "entity_id" in rows:
            known = known[known["entity_id"].isin(rows["entity_id"].dropna().astype(str))]
        seen = set(zip(known["entity_id"], known["event_time"], strict=True)) if len(
            known) else set()
        good, bad = check(rows.drop(columns=["_source", "_ingested_at", "_row"], errors="ignore")
                          .replace({pd.NA: None}), seen)
        bad = bad[bad["_new"] == "True"].drop(columns="_new") if len(bad) else bad
        if len(bad):  # quarantine first: a kill after it re-checks the batch, loses nothing
            append(quarantine, bad.assign(_bronze_version=str(head)).astype("string"),
                   upstream=head, operation="quarantine")
        # silver always commits (even empty): its mark says bronze was consumed
        append(silver, good[KEY + FEATURES] if len(good) else _empty_silver(),
               upstream=head, operation="check")
        return len(good), len(bad)

    def _gold(self, silver_head: int) -> int:
        gold = self.paths["gold"]
        rows = new_rows(self.paths["silver"], consumed(gold), silver_head)
        features = rows[KEY + FEATURES] if len(rows) else _empty_silver()
        append(gold, features.sort_values(KEY).reset_index(drop=True), upstream=silver_head,
               operation="features")
        return len(features)


def keys_between(path: Path, lo: pd.Timestamp, hi: pd.Timestamp) -> pd.DataFrame:
    """The keys (entity_id, event_time) of the table's files whose event times may fall in
    [lo, hi]: files are picked by the min and max the Delta log keeps for each (widened by
    a second: the log's times are in milliseconds), so the read grows with the batch, not
    the table. A file without statistics is always read."""
    from urllib.parse import unquote

    import pyarrow as pa
    import pyarrow.parquet as pq

    dt = _table(path)
    if dt is None:
        return pd.DataFrame(columns=KEY)
    actions = pa.table(dt.get_add_actions(flatten=True)).to_pandas()
    if actions.empty:
        return pd.DataFrame(columns=KEY)
    pad = pd.Timedelta(seconds=1)
    low, high = actions.get("min.event_time"), actions.get("max.event_time")
    keep = pd.Series(True, index=actions.index)
    if low is not None and high is not None:
        keep = low.isna() | high.isna() | ((low <= hi + pad) & (high >= lo - pad))
    files = [str(path / unquote(p)) for p in actions.loc[keep, "path"]]
    if not files:
        return pd.DataFrame(columns=KEY)
    return pq.read_table(files, columns=KEY).to_pandas()


def new_rows(path: Path, since: int, head: int) -> pd.DataFrame:
    """The rows appended to `path` after version `since` (-1: from the start), up to `head`."""
    before = set() if since < 0 else set(_files(path, since))
    new = [f for f in _files(path, head) if f not in before]
    if not new:  # nothing new: no rows, the table's columns
        import pyarrow as pa
        from deltalake import DeltaTable

        return pa.schema(DeltaTable(str(path), version=head).schema().to_arrow()
                         ).empty_table().to_pandas()
    import pyarrow.parquet as pq

    return pq.read_table(new).to_pandas()


def _files(path: Path, version: int) -> list[str]:
    return list(_table(path, version).file_uris())


def _empty_silver() -> pd.DataFrame:
    frame = pd.DataFrame({"entity_id": pd.Series([], dtype="string"),
                          "event_time": pd.Series([], dtype="datetime64[us, UTC]")})
    for f in FEATURES:
        frame[f] = pd.Series([], dtype="float64")
    return frame
