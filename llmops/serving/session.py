"""Browser sessions for the reviewer pages, and their CSRF tokens; no server-side state.

Signing in with a reviewer (or admin) key sets a cookie `<key id>.<expiry>.<mac>`,
the MAC an HMAC-SHA256 keyed with the key's stored hash. Any gateway replica that
shares the store can check it (no per-process secret); it dies with the key (revoked
keys drop out of the cache within its TTL) or at its expiry. The cookie never holds
the key itself, and it opens only the review scope (pages, votes, the dashboard).

Requests that a browser authenticates on its own (the cookie, or Basic credentials)
must carry `X-CSRF-Token` on every state-changing method: an HMAC of the session (or
of the Basic key) under the same hash, so it too is the same on every replica. The
pages put it in a `<meta name="csrf-token">` for their scripts.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from llmops.store import KeyRecord

COOKIE = "llmops_session"
HEADER = b"x-csrf-token"
MAX_AGE_S = 12 * 3600
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _mac(key_hash: str, message: str) -> str:
    return hmac.new(key_hash.encode(), message.encode(), hashlib.sha256).hexdigest()


def make_session(key: KeyRecord, key_hash: str, *, now: float | None = None,
                 max_age_s: int = MAX_AGE_S) -> str:
    """The cookie value for `key`, valid for `max_age_s`."""
    expires = int((time.time() if now is None else now) + max_age_s)
    return f"{key.id}.{expires}.{_mac(key_hash, f'session:{key.id}:{expires}')}"


def csrf_token(key_hash: str, session: str | None) -> str:
    """The CSRF token of a session (or, with None, of Basic credentials) of a key."""
    return _mac(key_hash, f"csrf:{session or 'basic'}")[:40]


def csrf_ok(given: bytes | None, expected: str) -> bool:
    """Whether a header's token matches; any bytes compare (non-ASCII gives False)."""
    return given is not None and hmac.compare_digest(given, expected.encode())


def cookie_value(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The session cookie in a request's headers, if any (no cookie parser: one name)."""
    for name, value in headers:
        if name == b"cookie":
            for part in value.decode("latin-1").split(";"):
                k, _, v = part.strip().partition("=")
                if k == COOKIE and v:
                    return v
    return None


def set_cookie_header(value: str, *, secure: bool, max_age_s: int = MAX_AGE_S) -> str:
    flags = f"; Max-Age={max_age_s}; Path=/; HttpOnly; SameSite=Strict"
    return f"{COOKIE}={value}{flags}{'; Secure' if secure else ''}"


def clear_cookie_header(*, secure: bool) -> str:
    return set_cookie_header("", secure=secure, max_age_s=0)


class SessionCache:
    """Session cookie -> (key, its hash), checked once per `ttl_s`; LRU past `max_entries`.

    `find(key_id)` returns the live key and its hash (the store's `key_by_id`).
    """

    def __init__(self, find: Callable[[str], tuple[KeyRecord, str] | None], *,
                 ttl_s: float = 30.0, max_entries: int = 10_000) -> None:
        self.find, self.ttl_s, self.max_entries = find, ttl_s, max_entries
        self._entries: OrderedDict[str, tuple[tuple[KeyRecord, str] | None, float]] = (
            OrderedDict())
        self._lock = threading.Lock()

    def cached(self, token: str) -> tuple[bool, tuple[KeyRecord, str] | None]:
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(token)
            if entry is None or entry[1] < now:
                return False, None
            self._entries.move_to_end(token)
            return True, entry[0]

    def lookup(self, token: str) -> tuple[KeyRecord, str] | None:
        """Check a cookie: well formed, not expired, signed by a live key (a store read)."""
        found = self._check(token)
        with self._lock:
            self._entries[token] = (found, time.monotonic() + (self.ttl_s if found else 2.0))
            self._entries.move_to_end(token)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return found

    def _check(self, token: str) -> tuple[KeyRecord, str] | None:
        key_id, _, rest = token.partition(".")
        expires, _, mac = rest.partition(".")
        if not (key_id and expires.isdigit() and len(mac) == 64) or len(key_id) > 32:
            return None
        if int(expires) < time.time():
            return None
        found = self.find(key_id)
        if found is None:
            return None
        _record, key_hash = found
        expected = _mac(key_hash, f"session:{key_id}:{expires}")
        return found if hmac.compare_digest(mac.encode(), expected.encode()) else None

    def expired(self, token: str) -> bool:
        """Whether a cached session has passed its own expiry (checked on every request)."""
        _, _, rest = token.partition(".")
        expires = rest.partition(".")[0]
        return not expires.isdigit() or int(expires) < time.time()
