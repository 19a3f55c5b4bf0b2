"""Routing: sticky weighted assignment of users to variants, and the alias cache.

Assignment hashes (endpoint, user) with SHA-256, so the same user lands on the
same variant in every process and after every restart, and users spread over
the variants in proportion to their weights (weight 0: never).

The alias cache resolves each variant's `chain.x@alias` in the registry off the
request path: at start, every `refresh_interval_s` in the background, and on
`POST /admin/reload`. A request takes the loaded chain once, at its start, so
it finishes on that version even if the alias moves meanwhile.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from llmops.errors import RegistryError
from llmops.registry import Ref, Registry

log = logging.getLogger("llmops.serving")


def bucket(endpoint: str, user: str) -> float:
    """A stable number in [0, 1) for this user of this endpoint."""
    digest = hashlib.sha256(f"{endpoint}\x00{user}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def assign(endpoint: str, user: str, weights: Sequence[tuple[str, float]]) -> str:
    """The variant this user gets: the weight intervals laid end to end, the user's point in them."""
    live = [(name, w) for name, w in weights if w > 0]
    if not live:
        raise ValueError("no variant has a weight above 0")
    point = bucket(endpoint, user) * sum(w for _, w in live)
    acc = 0.0
    for name, w in live:
        acc += w
        if point < acc:
            return name
    return live[-1][0]  # float rounding at the very top


@dataclass(frozen=True)
class Live:
    """A variant's chain as loaded: the alias resolved to a version, and the chain object."""

    ref: str
    name: str
    version: int
    chain: Any

    @property
    def label(self) -> str:
        return f"{self.name}/{self.version}"


Loader = Callable[[str], Any]


class AliasCache:
    """Variant references -> loaded chain versions, swapped atomically on refresh."""

    def __init__(self, refs: Sequence[str], registry: Registry, loader: Loader | None = None) -> None:
        self.refs = sorted(set(refs))
        self.registry = registry
        self.loader = loader or _load_chain
        self._live: dict[str, Live] = {}
        self._chains: dict[tuple[str, int], Any] = {}
        self.errors: dict[str, str] = {}
        self.archived: dict[str, str] = {}  # ref -> its archived version, not served
        self.last_refresh: float | None = None  # monotonic, end of the last full refresh
        self._lock = threading.Lock()

    def get(self, ref: str) -> Live | None:
        return self._live.get(ref)

    def snapshot(self) -> dict[str, Live]:
        return dict(self._live)

    @property
    def loaded(self) -> list[tuple[str, int]]:
        """The chain versions loaded now, (name, version)."""
        return list(self._chains)

    def refresh(self) -> dict[str, int | None]:
        """Resolve every alias now and load versions not loaded yet; {ref: version}."""
        with self._lock:  # one refresh at a time (background and /admin/reload)
            for ref in self.refs:
                try:
                    self._refresh_one(ref)
                except Exception as exc:  # keep serving what is loaded; report it
                    msg = " ".join(str(exc).split())[:300]
                    if self.errors.get(ref) != msg:
                        log.warning("alias %s: %s (still serving %s)", ref, msg,
                                    self._live[ref].label if ref in self._live else "nothing")
                    self.errors[ref] = msg
                else:
                    self.errors.pop(ref, None)
            in_use = {(lv.name, lv.version) for lv in self._live.values()}
            for key in [k for k in self._chains if k not in in_use]:
                del self._chains[key]  # requests in flight keep their own reference
            self.last_refresh = time.monotonic()
            return {ref: (lv.version if (lv := self._live.get(ref)) else None) for ref in self.refs}

    def _refresh_one(self, ref: str) -> None:
        info = self.registry.resolve(Ref.parse(ref, kind="chain"))
        current = self._live.get(ref)
        if info.archived:  # never served, even if it was a moment ago
            self.archived[ref] = info.ref
            if self._live.pop(ref, None) is not None:
                log.warning("alias %s: %s is archived; no longer serving it", ref, info.ref)
            raise RegistryError(f"{info.ref} is archived; not serving it")
        self.archived.pop(ref, None)
        if current is not None and current.version == info.version:
            return
        key = (info.name, info.version)
        chain = self._chains.get(key)
        if chain is None:
            chain = self.loader(f"{info.name}/{info.version}")
            self._chains[key] = chain
        self._live[ref] = Live(ref, info.name, info.version, chain)  # one atomic swap
        if current is not None:
            log.info("alias %s moved: version %d -> %d", ref, current.version, info.version)


def _load_chain(ref: str) -> Any:
    from llmops.chains import load

    return load(ref)
