"""API keys: made once, shown once, stored as a SHA-256 hash, cached on the request path.

A key is 32 random bytes (`llmops-<id>-<secret>`): with that much entropy a
plain SHA-256 is as safe as a slow hash and costs microseconds per request.
The id inside it names the key in rows and logs; the secret never leaves
the caller.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from llmops.store import ROLES, KeyRecord, Store

# Which roles may do what; every route names one of these scopes.
SCOPES: dict[str, frozenset[str]] = {
    "chat": frozenset({"client", "admin"}),
    "models": frozenset({"client", "reviewer", "admin"}),
    "review": frozenset({"reviewer", "admin"}),
    "metrics": frozenset({"metrics", "admin"}),  # a Prometheus scraper needs no admin key
    "admin": frozenset({"admin"}),
}
# The shape of every key `create_key` makes: anything else is refused without a query.
_KEY_SHAPE = re.compile(r"llmops-k[0-9a-f]{12}-[A-Za-z0-9_\-]{43}")


def well_formed(secret: str) -> bool:
    return _KEY_SHAPE.fullmatch(secret) is not None


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(store: Store, *, name: str, role: str) -> tuple[KeyRecord, str]:
    """A new key for `name` with `role`: (its record, the secret to show once)."""
    if role not in ROLES:
        from llmops.store import StoreError

        raise StoreError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    key_id = "k" + secrets.token_hex(6)
    secret = f"llmops-{key_id}-{secrets.token_urlsafe(32)}"
    return store.add_key(key_id, name=name, role=role, key_hash=hash_key(secret)), secret


def key_from_header(authorization: str | None) -> str | None:
    """The key in `Bearer <key>` or in the password of `Basic` (browsers on /review)."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return value
    if scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2] or None
    return None


@dataclass
class _Entry:
    record: KeyRecord | None
    until: float


class KeyCache:
    """Hash -> key record, so a known key costs no query; entries expire after `ttl_s`.

    A revoked key stops working within `ttl_s` seconds on every process. Past
    `max_entries` the least recently used entry goes (a flood of unknown keys cannot
    push the valid ones out all at once); a key not shaped like ours is unknown
    without a query.
    """

    def __init__(self, store: Store, *, ttl_s: float = 30.0, miss_ttl_s: float = 2.0,
                 max_entries: int = 10_000) -> None:
        self.store, self.ttl_s, self.miss_ttl_s = store, ttl_s, miss_ttl_s
        self.max_entries = max_entries
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self.queries = 0  # look-ups that reached the store

    def cached(self, secret: str) -> tuple[bool, KeyRecord | None]:
        """(known without a query, record): from the cache, or refused by its shape."""
        if not well_formed(secret):
            return True, None
        digest = hash_key(secret)
        with self._lock:
            entry = self._entries.get(digest)
            if entry is None or entry.until < time.monotonic():
                return False, None
            self._entries.move_to_end(digest)
        return True, entry.record

    def lookup(self, secret: str) -> KeyRecord | None:
        """The key's record (querying the store on a cache miss); None if unknown or revoked."""
        hit, record = self.cached(secret)
        if hit:
            return record
        digest = hash_key(secret)
        self.queries += 1
        record = self.store.find_key(digest)
        now = time.monotonic()
        with self._lock:
            self._entries[digest] = _Entry(record, now + (self.ttl_s if record else self.miss_ttl_s))
            self._entries.move_to_end(digest)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return record
