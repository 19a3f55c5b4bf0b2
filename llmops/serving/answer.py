"""Answering one chat request: run the plan's chain, fall back, record, shadow.

The HTTP route (`routes/chat.py`) parses and formats; the steps are:
1. the plan (`plan.py`): endpoint, limits, variant, chain version, normalized input;
2. a concurrency slot of the endpoint (503 with Retry-After when none is free);
3. the chain, awaited on the event loop (its blocking steps on the gateway's
   threads), within the endpoint's timeout (504), falling back to the endpoint's
   fallback variant when the assigned one fails;
4. the recorder (`record.py`) commits the row before the answer goes out;
5. a copy to the shadow variant, recorded and never returned.
Streaming follows the same plan in `stream.py`.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Awaitable
from typing import TypeVar

from llmops.chains.runtime import ChainResult
from llmops.errors import (
    BackendError,
    BackendTimeoutError,
    BusyError,
    ChainError,
    KeyBusyError,
    LlmopsError,
)
from llmops.serving.gateway import Gateway
from llmops.serving.plan import Plan, live_of
from llmops.serving.record import Outcome, Recorder

log = logging.getLogger("llmops.serving")
T = TypeVar("T")
FALLBACK_ON = (BackendError, ChainError, BusyError)  # what makes a variant give way


if sys.version_info >= (3, 11):
    async def within(aw: Awaitable[T], seconds: float) -> T:
        """`aw`, cancelled with TimeoutError after `seconds` (no extra task on 3.11+)."""
        async with asyncio.timeout(seconds):
            return await aw
else:  # pragma: no cover - Python 3.10
    async def within(aw: Awaitable[T], seconds: float) -> T:
        return await asyncio.wait_for(aw, seconds)


class Slot:
    """One of the endpoint's concurrent-request slots: 503 when none is free, 429 when the
    key holds its share (`max_concurrency_per_key`), 503 when the log is too far behind
    to take the row (before any model runs)."""

    def __init__(self, gw: Gateway, plan: Plan) -> None:
        self.gw, self.name = gw, plan.endpoint_name
        limits = plan.endpoint.limits
        self.limit, self.per_key = limits.max_concurrency, limits.per_key
        self.key = (plan.endpoint_name, plan.key_id)
        self.timeout_s = plan.endpoint.limits.timeout_s
        self.held = False
        self.token = ""  # of the slot in Redis, if any

    def __enter__(self) -> Slot:
        gw = self.gw
        if gw.in_flight[self.name] >= self.limit:
            raise BusyError(f"endpoint {self.name!r} is at its maximum of {self.limit} "
                            "concurrent requests; retry shortly", headers={"Retry-After": "1"})
        mine = gw.in_flight_by_key.get(self.key, 0)
        if mine >= self.per_key:
            raise KeyBusyError(f"key {self.key[1]} has {mine} requests in flight on endpoint "
                               f"{self.name!r}, its most at once; retry when one has finished",
                               headers={"Retry-After": "1"})
        if gw.options.log_requests and gw.store.saturated():
            raise BusyError(f"the request log has {gw.store.pending} writes waiting; retry "
                            "shortly", headers={"Retry-After": "2"})
        gw.in_flight[self.name] += 1
        gw.in_flight_by_key[self.key] = mine + 1
        gw.metrics.in_flight.inc()
        self.held = True
        return self

    async def shared(self) -> None:
        """With Redis (`gateway.redis_url`): the key's slot among every replica's, or 429
        (this replica's slot is given back)."""
        limits = self.gw.shared
        if limits is None:
            return
        ttl = self.timeout_s + 30  # a replica that died holding it: lapses by then
        token = await limits.hold(self.name, self.key[1], self.per_key, ttl)
        if token is None:
            self.__exit__()
            raise KeyBusyError(f"key {self.key[1]} has {self.per_key} requests in flight on "
                               f"endpoint {self.name!r} across the gateway's replicas, its "
                               "most at once; retry when one has finished",
                               headers={"Retry-After": "1"})
        self.token = token

    def __exit__(self, *exc: object) -> None:
        if self.token:
            token, self.token = self.token, ""
            assert self.gw.shared is not None
            self.gw.spawn(self.gw.shared.release(self.name, self.key[1], token))
        if self.held:
            self.held = False
            gw = self.gw
            gw.in_flight[self.name] -= 1
            left = gw.in_flight_by_key.get(self.key, 1) - 1
            if left:
                gw.in_flight_by_key[self.key] = left
            else:
                gw.in_flight_by_key.pop(self.key, None)
            gw.metrics.in_flight.dec()


async def answer(gw: Gateway, p: Plan) -> Outcome:
    """Run the plan (with fallback), commit its row, start its shadow; the outcome to return."""
    rec = Recorder(gw)
    with Slot(gw, p) as slot:
        await slot.shared()
        try:
            result = await _invoke_with_fallback(gw, p, rec)
        except LlmopsError as exc:
            exc.request_id = p.request_id  # for the client
            await rec.failed(p, exc)
            raise
        outcome = Outcome.of(p, result)
        try:
            await rec.answered(outcome)
        except LlmopsError as exc:
            exc.request_id = p.request_id
            raise
    shadow(gw, p, rec)
    return outcome


async def _invoke_with_fallback(gw: Gateway, p: Plan, rec: Recorder) -> ChainResult:
    try:
        return await invoke(gw, p)
    except FALLBACK_ON as exc:
        if not fall_back(gw, p, exc, rec):
            raise
    return await invoke(gw, p)


def fall_back(gw: Gateway, p: Plan, exc: Exception, rec: Recorder) -> bool:
    """On a variant's failure: record it, and move the plan to the fallback if there is one."""
    rec.variant_failed(p, exc)
    fb = p.endpoint.fallback
    if fb is None or fb == p.variant or isinstance(exc, BackendTimeoutError):
        return False
    live = live_of(gw, p.endpoint, fb)
    if live is None:
        return False
    log.warning("%s: variant %s failed (%s; the row has the message); falling back to %s",
                p.request_id, p.variant, type(exc).__name__, fb)
    p.switch_to(fb, live, exc)
    return True


def not_loaded(gw: Gateway, p: Plan) -> BusyError:
    ref = p.endpoint.variant(p.variant).ref
    error = gw.cache.errors.get(ref)
    archived = gw.cache.archived.get(ref)
    why = (f"the registry archived its version ({archived})" if archived else
           "its chain failed to load (see the gateway log)" if error else
           "the gateway is starting")
    return BusyError(f"variant {p.variant} of {p.endpoint_name!r} is not loaded; {why}")


async def invoke(gw: Gateway, p: Plan) -> ChainResult:
    """The plan's chain on its input, within what is left of the endpoint's timeout."""
    if p.live is None:
        raise not_loaded(gw, p)
    try:
        result: ChainResult = await within(
            p.live.chain.ainvoke(p.inputs, executor=gw.pool, **p.chain_kwargs()),
            max(p.deadline - time.perf_counter(), 0.0))
    except asyncio.TimeoutError:
        raise BackendTimeoutError(
            f"endpoint {p.endpoint_name!r}: no answer within {p.endpoint.limits.timeout_s:g} s"
        ) from None
    except LlmopsError:
        raise
    except Exception as exc:  # a chain's own bug: the variant failed, not the gateway
        raise BackendError(f"variant {p.variant} failed: {type(exc).__name__}: {exc}") from exc
    return result


def shadow(gw: Gateway, p: Plan, rec: Recorder) -> None:
    """Send a copy of the request to the endpoint's shadow variant, in the background."""
    name = p.endpoint.shadow
    if name is None or name == p.variant or not gw.options.log_requests:
        return
    live = live_of(gw, p.endpoint, name)
    if live is None:
        return
    if len(gw.background) >= p.endpoint.limits.max_concurrency:  # shadows never pile up
        rec.shadow_skipped(p, name)
        return
    sp = Plan(f"{p.request_id}-shadow", p.endpoint_name, p.endpoint, name, live, p.messages,
              p.inputs, p.llm_kwargs, p.key_id, p.user, False)
    gw.spawn(_run_shadow(gw, sp, p.request_id, rec))


async def _run_shadow(gw: Gateway, sp: Plan, parent: str, rec: Recorder) -> None:
    try:
        outcome = Outcome.of(sp, await invoke(gw, sp))
    except Exception as exc:
        await rec.shadow(sp, parent, None, exc)
    else:
        await rec.shadow(sp, parent, outcome)
