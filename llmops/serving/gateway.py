"""The state of one gateway process: routes, alias cache, log store, keys, limits, metrics.

Built at start-up by the app's lifespan; the routes reach it through the
dependencies in `deps.py`. Background work (alias refresh, shadow requests)
is tracked here so a shutdown can finish it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from llmops.config import Settings
from llmops.llm import openai as llm
from llmops.registry import Registry
from llmops.serving import rollout
from llmops.serving.keys import KeyCache
from llmops.serving.limits import RateLimiter
from llmops.serving.metrics import Metrics
from llmops.serving.router import AliasCache
from llmops.serving.session import SessionCache
from llmops.serving.shared_limits import SharedLimits
from llmops.serving.spec import RoutesSpec
from llmops.store import Store

log = logging.getLogger("llmops.serving")
T = TypeVar("T")


@dataclass
class GatewayOptions:
    """What a process chooses at start (the CLI's flags); the rest is settings and routes."""

    log_requests: bool = True  # off only to measure its cost (benchmarks)
    # Threads for what blocks: a chain's retrieval, a local model, key look-ups. A remote
    # LLM (openai backend) is awaited on the event loop and holds no thread.
    threads: int = 16
    # A shutdown's whole budget, s: requests in flight, shadow requests and the log's
    # last commits all finish within it (counted from the exit signal).
    drain_s: float = 25.0
    # Whether the process is the gateway's own (`llmops serve`): then what is loaded at start
    # (MLflow, chains: ~400,000 objects) leaves the cyclic GC's sight (`gc.freeze`). Else
    # each full collection walks it all, a 100-400 ms stop of every request in flight.
    freeze_gc: bool = False


@dataclass
class Gateway:
    settings: Settings
    routes: RoutesSpec
    store: Store
    cache: AliasCache
    options: GatewayOptions = field(default_factory=GatewayOptions)
    metrics: Metrics = field(default_factory=Metrics)

    def __post_init__(self) -> None:
        gs = self.settings.gateway
        self.store.commit_timeout_s = gs.commit_timeout_s
        self.store.max_pending = gs.max_pending_writes
        self.keys = KeyCache(self.store, ttl_s=gs.refresh_interval_s)
        rl = self.routes.rate_limit
        self.limiter = RateLimiter(rl.requests_per_s, rl.burst)
        # failed authentications per client address (the gate, and /signin)
        self.auth_failures = RateLimiter(rl.auth_failures_per_s, rl.auth_failure_burst)
        # with Redis, the limits hold across every replica (`shared_limits.py`)
        self.shared: SharedLimits | None = (SharedLimits(gs.redis_url) if gs.redis_url
                                            else None)
        self.sessions = SessionCache(self.store.key_by_id, ttl_s=gs.refresh_interval_s)
        self.pool = ThreadPoolExecutor(self.options.threads, thread_name_prefix="llmops-chain")
        # key look-ups on a cache miss: their own threads, so a flood of unknown keys
        # never takes the chains' threads
        self.key_pool = ThreadPoolExecutor(2, thread_name_prefix="llmops-keys")
        self.exit_requested: float | None = None  # monotonic time of SIGTERM/SIGINT
        self.in_flight: dict[str, int] = dict.fromkeys(self.routes.endpoints, 0)
        self.in_flight_by_key: dict[tuple[str, str], int] = {}  # (endpoint, key id)
        self.background: set[asyncio.Task[Any]] = set()
        self.refresher: asyncio.Task[None] | None = None
        self.watchdog: asyncio.Task[None] | None = None
        self.readiness: tuple[float, int, dict[str, Any]] | None = None  # cached /readyz
        self.readiness_lock = asyncio.Lock()
        # endpoint -> its variants' weights now (the routes file's, or a rollout's shares)
        self.weights: dict[str, list[tuple[str, float]]] = {
            name: rollout.weights(ep, None) for name, ep in self.routes.endpoints.items()}
        self.started = time.time()

    @classmethod
    def build(cls, settings: Settings, routes: RoutesSpec, store: Store, registry: Registry,
              options: GatewayOptions | None = None, loader: Any = None) -> Gateway:
        refs = [v.ref for ep in routes.endpoints.values() for v in ep.variants]
        return cls(settings, routes, store, AliasCache(refs, registry, loader),
                   options or GatewayOptions())

    async def take(self, kind: str, key: str, limiter: RateLimiter) -> float | None:
        """One token of `limiter` for `key`: from Redis, across every replica, when the
        gateway has it, else this process's own bucket; None, or seconds to wait."""
        if self.shared is not None:
            return await self.shared.take(kind, key, limiter)
        return limiter.acquire(key)

    # -- running blocking work -----------------------------------------------------
    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` on the chain threads."""
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    def spawn(self, coro: Awaitable[Any]) -> None:
        """Background work that shutdown waits for (shadow requests, late log writes)."""
        task = asyncio.ensure_future(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    # -- alias refresh ---------------------------------------------------------------
    async def reload(self) -> dict[str, int | None]:
        loaded = len(self.cache.loaded)
        try:
            versions = await asyncio.to_thread(self.cache.refresh)
        except Exception:
            self.metrics.refreshes.labels("error").inc()
            raise
        self.metrics.refreshes.labels("error" if self.cache.errors else "ok").inc()
        if self.options.freeze_gc and len(self.cache.loaded) != loaded:
            gc.freeze()  # a newly loaded chain is long-lived too
        return versions

    async def _refresh_forever(self) -> None:
        interval = self.settings.gateway.refresh_interval_s
        while True:
            await asyncio.sleep(interval)
            try:
                await self.advance_rollouts()
                await self.reload()
            except Exception:  # never let the refresher die; readiness reports staleness
                log.exception("alias refresh failed")

    async def advance_rollouts(self) -> None:
        """Let each rollout decide on the votes so far, then route with its shares."""
        for name, ep in self.routes.endpoints.items():
            if ep.rollout is None:
                continue
            try:
                await asyncio.to_thread(rollout.advance, self.store, self.cache.registry,
                                        name, ep)
                state = await asyncio.to_thread(self.store.get_rollout, name)
            except Exception:  # serving goes on with the shares it has
                log.exception("rollout of %s: no decision this time", name)
                continue
            self.weights[name] = rollout.weights(ep, state)

    async def _watch_forever(self) -> None:
        """Once a second: restart the log writer if its thread died with writes waiting."""
        while True:
            await asyncio.sleep(1.0)
            state = self.store.watch()
            self.metrics.log_pending.set(state.pending)

    def refresher_alive(self) -> bool:
        if self.refresher is None or self.refresher.done():
            return False
        last = self.cache.last_refresh
        return last is not None and time.monotonic() - last < 3 * max(
            self.settings.gateway.refresh_interval_s, 1.0) + 60

    # -- lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        await self.advance_rollouts()
        await self.reload()
        if self.options.freeze_gc:
            gc.collect()
            gc.freeze()
        self.refresher = asyncio.create_task(self._refresh_forever(), name="llmops-refresh")
        self.watchdog = asyncio.create_task(self._watch_forever(), name="llmops-watchdog")

    async def stop(self, budget_s: float | None = None) -> None:
        """After uvicorn drained the requests: finish shadows, stop refreshing, commit the log,
        all within `budget_s` (default: the drain time): a stuck database cannot hold the
        process past it (writes still waiting then were never acknowledged)."""
        deadline = time.monotonic() + (self.options.drain_s if budget_s is None else budget_s)
        for task in (self.refresher, self.watchdog):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.background:
            left = max(deadline - time.monotonic() - 1.0, 0.0)
            _, pending = await asyncio.wait(set(self.background), timeout=left)
            for task in pending:
                task.cancel()
        left = max(deadline - time.monotonic(), 0.5)
        committed = await asyncio.to_thread(self.store.close, left)  # commits pending writes
        if not committed:
            log.error("shutdown: %d log writes were not committed within the drain time",
                      self.store.pending)
        await llm.aclose()  # the upstream connections of this loop
        if self.shared is not None:
            await self.shared.close()
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.key_pool.shutdown(wait=False, cancel_futures=True)

    def shutdown_budget(self) -> float:
        """What is left of the drain time since the exit signal came (all of it without one)."""
        if self.exit_requested is None:
            return self.options.drain_s
        return max(self.options.drain_s - (time.monotonic() - self.exit_requested), 1.0)
