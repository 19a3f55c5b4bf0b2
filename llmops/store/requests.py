"""Request rows: what the gateway served, with the lineage of each answer."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from llmops.lineage import Lineage
from llmops.store.inserts import Insert
from llmops.store.schema import FEEDBACK, REQUESTS
from llmops.store.writer import Writer


@dataclass
class RequestRow:
    """One served (or failed) chat request."""

    id: str
    endpoint: str
    status: int
    created_at: float = field(default_factory=time.time)
    variant: str | None = None
    chain: str | None = None
    chain_version: int | None = None
    key_id: str | None = None
    user: str | None = None
    shadow_of: str | None = None
    stream: bool = False
    messages: list[dict[str, Any]] | None = None
    answer: str | None = None
    sources: list[dict[str, Any]] | None = None
    lineage: Lineage | None = None  # stored as its to_dict()
    prompt_version: int | None = None
    index_version: int | None = None
    latency_ms: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    error: str | None = None


_ROW_FIELDS = tuple(f.name for f in fields(RequestRow))
_LINEAGE_FIELDS = tuple(f.name for f in fields(Lineage))


def _lineage_json(value: Lineage | dict[str, Any] | None) -> dict[str, Any] | None:
    """The stored form of a row's lineage, `Lineage.to_dict()`; a plain dict (older callers)
    is read as a Lineage first.

    Built field by field: `to_dict` (dataclasses.asdict) deep-copies, about 25 us a row on
    the gateway's event loop, for a dict serialized at once (a test keeps the two equal).
    """
    if value is None:
        return None
    lin = value if isinstance(value, Lineage) else Lineage.from_dict(value)
    out = {name: getattr(lin, name) for name in _LINEAGE_FIELDS}
    out["chunk_ids"] = list(lin.chunk_ids)
    if not lin.extra:
        del out["extra"]
    return out


class RequestsMixin(Writer):
    """Writing request rows through the writer, reading them back as dicts."""

    def insert_request_op(self, row: RequestRow) -> Insert:
        values = {f: getattr(row, f) for f in _ROW_FIELDS}
        values["lineage"] = _lineage_json(row.lineage)
        return Insert(REQUESTS, values)

    def update_request_op(self, request_id: str, **values: Any) -> Callable[[Connection], None]:
        if "lineage" in values:
            values["lineage"] = _lineage_json(values["lineage"])
        stmt = REQUESTS.update().where(REQUESTS.c.id == request_id).values(**values)

        def op(conn: Connection) -> None:
            conn.execute(stmt)

        return op

    def log_request(self, row: RequestRow) -> None:
        """Insert one request row and wait for its commit."""
        self.submit(self.insert_request_op(row)).result()

    def get_request(self, request_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            r = conn.execute(sa.select(REQUESTS).where(REQUESTS.c.id == request_id)).first()
        return row_dict(r) if r else None

    def list_requests(
        self, *, endpoint: str | None = None, limit: int = 50, offset: int = 0,
        unrated_by: str | None = None, include_shadow: bool = False,
    ) -> list[dict[str, Any]]:
        """Newest first; `unrated_by` keeps those the reviewer has not voted on."""
        q = sa.select(REQUESTS).order_by(REQUESTS.c.created_at.desc(), REQUESTS.c.id)
        if endpoint:
            q = q.where(REQUESTS.c.endpoint == endpoint)
        if not include_shadow:
            q = q.where(REQUESTS.c.shadow_of.is_(None))
        if unrated_by:
            voted = sa.select(FEEDBACK.c.request_id).where(FEEDBACK.c.reviewer == unrated_by)
            q = q.where(REQUESTS.c.id.not_in(voted))
        q = q.limit(limit).offset(offset)
        with self.engine.connect() as conn:
            return [row_dict(r) for r in conn.execute(q)]

    def count_requests(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(REQUESTS)).scalar_one())

    def endpoints(self) -> list[str]:
        """The endpoints with requests in the log, by name."""
        q = sa.select(REQUESTS.c.endpoint).distinct().order_by(REQUESTS.c.endpoint)
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(q)]


def row_dict(r: Any) -> dict[str, Any]:
    return dict(r._mapping)


def to_jsonl(rows: Sequence[dict[str, Any]] | Iterator[dict[str, Any]]) -> Iterator[str]:
    """One JSON line per row (for exports)."""
    for row in rows:
        yield json.dumps(row, default=str, ensure_ascii=False)
