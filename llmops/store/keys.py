"""API keys: who may call the gateway, in which role; only the key's hash is stored."""

from __future__ import annotations

import time
from dataclasses import dataclass

import sqlalchemy as sa

from llmops.errors import StoreError
from llmops.store.schema import KEYS
from llmops.store.writer import Writer

ROLES = ("client", "reviewer", "admin", "metrics")  # metrics: /metrics only (Prometheus)


@dataclass(frozen=True)
class KeyRecord:
    id: str
    name: str
    role: str
    created_at: float
    revoked_at: float | None


class KeysMixin(Writer):
    """Keys are written rarely (by an admin): in their own transaction, not the writer's."""

    def add_key(self, key_id: str, *, name: str, role: str, key_hash: str) -> KeyRecord:
        if role not in ROLES:
            raise StoreError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
        now = time.time()
        with self.write_engine.begin() as conn:
            conn.execute(KEYS.insert().values(id=key_id, name=name, role=role,
                                              key_hash=key_hash, created_at=now))
        return KeyRecord(key_id, name, role, now, None)

    def find_key(self, key_hash: str) -> KeyRecord | None:
        """The live (not revoked) key with this hash."""
        q = sa.select(KEYS.c.id, KEYS.c.name, KEYS.c.role, KEYS.c.created_at,
                      KEYS.c.revoked_at).where(
            (KEYS.c.key_hash == key_hash) & KEYS.c.revoked_at.is_(None))
        with self.engine.connect() as conn:
            r = conn.execute(q).first()
        return KeyRecord(*r) if r else None

    def key_by_id(self, key_id: str) -> tuple[KeyRecord, str] | None:
        """The live key with this id and its hash (sessions are signed with the hash)."""
        q = sa.select(KEYS.c.id, KEYS.c.name, KEYS.c.role, KEYS.c.created_at,
                      KEYS.c.revoked_at, KEYS.c.key_hash).where(
            (KEYS.c.id == key_id) & KEYS.c.revoked_at.is_(None))
        with self.engine.connect() as conn:
            r = conn.execute(q).first()
        return (KeyRecord(*r[:5]), r[5]) if r else None

    def list_keys(self) -> list[KeyRecord]:
        q = sa.select(KEYS.c.id, KEYS.c.name, KEYS.c.role, KEYS.c.created_at,
                      KEYS.c.revoked_at).order_by(KEYS.c.created_at)
        with self.engine.connect() as conn:
            return [KeyRecord(*r) for r in conn.execute(q)]

    def revoke_key(self, key_id: str) -> bool:
        with self.write_engine.begin() as conn:
            n = conn.execute(KEYS.update().where(
                (KEYS.c.id == key_id) & KEYS.c.revoked_at.is_(None)).values(revoked_at=time.time()))
        return bool(n.rowcount)
