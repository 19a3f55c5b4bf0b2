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

import pandas as pd

from llmops.tabular.quality import check
from llmops.tabular.source import FEATURES, KEY

CONSUMED = "llmops.consumed"  # commit metadata: the upstream version this commit consumed
LAYERS = ("bronze", "silver", "quarantine", "gold", "labels")


def version_of(path: Path) -> int | None:
    """The table's newest version, or None if it does not exist yet."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        return int(DeltaTable(str(path)).version())
    except TableNotFoundError:
        return None


def read(path: Path, version: int | None = None) -> pd.DataFrame:
    """The table at `version` (default: newest) as a DataFrame; empty if it does not exist."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from deltalake import DeltaTable

    if version_of(path) is None:
        return pd.DataFrame()
    dt = DeltaTable(str(path), version=version)
    schema = pa.schema(dt.schema().to_arrow())  # deltalake's arro3 schema, as pyarrow's
    files = dt.file_uris()
    if not files:
        return schema.empty_table().to_pandas()
    return pq.read_table(files, schema=schema).to_pandas()


def consumed(path: Path) -> int:
    """The upstream version the table's newest commit consumed (-1: none yet)."""
    from deltalake import DeltaTable

    if version_of(path) is None:
        return -1
    for commit in DeltaTable(str(path)).history(1):
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
    # a non-default index would become a column of its own
    write_deltalake(str(path), frame.reset_index(drop=True), mode="append",
                    commit_properties=CommitProperties(custom_metadata=meta))
    v = version_of(path)
    assert v is not None
    return v


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
        known = read(silver)
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
    from deltalake import DeltaTable

    return list(DeltaTable(str(path), version=version).file_uris())


def _empty_silver() -> pd.DataFrame:
    frame = pd.DataFrame({"entity_id": pd.Series([], dtype="string"),
                          "event_time": pd.Series([], dtype="datetime64[us, UTC]")})
    for f in FEATURES:
        frame[f] = pd.Series([], dtype="float64")
    return frame
