"""Answering one chat request: pick the variant, run its chain, fall back, log, shadow.

The HTTP route (`routes/chat.py`) only parses and formats; the steps are here:
1. the endpoint and its limits (404, 422 over the `max_tokens` cap, 503 when busy);
2. the variant: sticky by user, weighted; its chain as loaded now (no registry call);
3. the chain, awaited on the event loop (its blocking steps on the gateway's threads),
   within the endpoint's timeout (504), falling back to the endpoint's fallback
   variant when the assigned one fails;
4. the request row, committed before the answer goes out (a 2xx means it is logged);
5. a copy to the shadow variant, logged and never returned.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import sys
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from llmops.chains.llm import Generation
from llmops.chains.runtime import ChainResult, normalize_input
from llmops.errors import BackendError, BackendTimeoutError, ChainError, LlmopsError
from llmops.serving.errors import BadRequestError, BusyError, ModelNotFoundError, OverCapError
from llmops.serving.gateway import Gateway
from llmops.serving.router import Live, assign
from llmops.serving.schemas import ChatCompletionRequest
from llmops.serving.spec import EndpointSpec
from llmops.store import KeyRecord, RequestRow

log = logging.getLogger("llmops.serving")
T = TypeVar("T")


if sys.version_info >= (3, 11):
    async def within(aw: Awaitable[T], seconds: float) -> T:
        """`aw`, cancelled with TimeoutError after `seconds` (no extra task on 3.11+)."""
        async with asyncio.timeout(seconds):
            return await aw
else:  # pragma: no cover - Python 3.10
    async def within(aw: Awaitable[T], seconds: float) -> T:
        return await asyncio.wait_for(aw, seconds)


_ID_PREFIX = f"chatcmpl-{secrets.token_hex(8)}"  # random per process: unique across replicas
_ids = itertools.count(1)


def new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_ids):012x}"


@dataclass
class Plan:
    """What a request will run: endpoint, variant, chain version, parameters."""

    request_id: str
    endpoint_name: str
    endpoint: EndpointSpec
    variant: str
    live: Live | None
    messages: list[dict[str, str]]
    llm_kwargs: dict[str, Any]
    key_id: str
    user: str | None
    stream: bool
    started: float = field(default_factory=time.perf_counter)
    fallback_from: str | None = None
    first_error: str | None = None


@dataclass
class Outcome:
    plan: Plan
    result: ChainResult

    @property
    def usage(self) -> tuple[int, int]:
        lin = self.result.lineage
        return int(lin.get("prompt_tokens") or 0), int(lin.get("completion_tokens") or 0)


def plan(gw: Gateway, req: ChatCompletionRequest, key: KeyRecord,
         headers: dict[str, str]) -> Plan:
    """Check the request against its endpoint and choose the variant; no work done yet."""
    endpoint = gw.routes.endpoints.get(req.model)
    if endpoint is None:
        known = ", ".join(sorted(gw.routes.endpoints))
        raise ModelNotFoundError(f"the model {req.model!r} does not exist; endpoints: {known}",
                                 param="model")
    cap = endpoint.limits.max_tokens
    asked = req.max_completion_tokens or req.max_tokens
    if asked is not None and asked > cap:
        param = "max_completion_tokens" if req.max_completion_tokens else "max_tokens"
        raise OverCapError(f"{param} {asked} is above the cap of endpoint {req.model!r}: {cap}",
                           param=param)
    messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()}
                for m in req.messages if m.role != "tool"]
    try:
        normalize_input(messages)
    except ChainError as exc:
        raise BadRequestError(str(exc), param="messages") from None
    rid = new_request_id()
    user = req.user or headers.get(endpoint.sticky_header)
    variant = assign(req.model, user or rid, [(v.label, v.weight) for v in endpoint.variants])
    kwargs: dict[str, Any] = {"max_tokens": asked}
    if req.temperature is not None:
        kwargs["temperature"] = req.temperature
    return Plan(rid, req.model, endpoint, variant, _live(gw, endpoint, variant), messages, kwargs,
                key.id, req.user, bool(req.stream))


def _live(gw: Gateway, endpoint: EndpointSpec, variant: str) -> Live | None:
    return gw.cache.get(endpoint.variant(variant).ref)


def _capped(plan: Plan) -> dict[str, Any]:
    """The LLM arguments, with the chain's own default where the client set none."""
    kwargs = dict(plan.llm_kwargs)
    assert plan.live is not None
    if kwargs.get("max_tokens") is None:
        spec = getattr(getattr(plan.live.chain, "config", None), "llm", None)
        default = getattr(spec, "max_tokens", None) or plan.endpoint.limits.max_tokens
        kwargs["max_tokens"] = min(default, plan.endpoint.limits.max_tokens)
    return kwargs


class _Slot:
    """One of the endpoint's concurrent-request slots (503 when none is free)."""

    def __init__(self, gw: Gateway, plan: Plan) -> None:
        self.gw, self.name = gw, plan.endpoint_name
        self.limit = plan.endpoint.limits.max_concurrency

    def __enter__(self) -> None:
        if self.gw.in_flight[self.name] >= self.limit:
            raise BusyError(f"endpoint {self.name!r} is at its maximum of {self.limit} "
                            "concurrent requests; retry shortly", headers={"Retry-After": "1"})
        self.gw.in_flight[self.name] += 1
        self.gw.metrics.in_flight.inc()

    def __exit__(self, *exc: object) -> None:
        self.gw.in_flight[self.name] -= 1
        self.gw.metrics.in_flight.dec()


# -- plain ------------------------------------------------------------------------------
async def answer(gw: Gateway, p: Plan) -> Outcome:
    """Run the plan (with fallback), commit its row, start its shadow; the outcome to return."""
    with _Slot(gw, p):
        try:
            result = await _invoke_with_fallback(gw, p)
        except LlmopsError as exc:
            await _log_failure(gw, p, exc)
            raise
        outcome = Outcome(p, result)
        await _log_success(gw, outcome)
    _shadow(gw, p)
    return outcome


async def _invoke_with_fallback(gw: Gateway, p: Plan) -> ChainResult:
    deadline = p.started + p.endpoint.limits.timeout_s
    try:
        return await _invoke(gw, p, deadline)
    except (BackendError, ChainError, BusyError) as exc:
        if not _switch_to_fallback(gw, p, exc):
            raise
    return await _invoke(gw, p, deadline)


def _switch_to_fallback(gw: Gateway, p: Plan, exc: Exception) -> bool:
    """On a variant's failure: count it, and move the plan to the fallback if there is one."""
    gw.metrics.errors.labels(p.endpoint_name, p.variant, type(exc).__name__).inc()
    fb = p.endpoint.fallback
    if fb is None or fb == p.variant or isinstance(exc, BackendTimeoutError):
        return False
    live = _live(gw, p.endpoint, fb)
    if live is None:
        return False
    log.warning("%s: variant %s failed (%s); falling back to %s", p.request_id, p.variant,
                exc, fb)
    p.fallback_from, p.first_error = p.variant, f"{type(exc).__name__}: {exc}"[:2000]
    p.variant, p.live = fb, live
    return True


async def _invoke(gw: Gateway, p: Plan, deadline: float) -> ChainResult:
    if p.live is None:
        raise BusyError(f"variant {p.variant} of {p.endpoint_name!r} is not loaded; "
                        f"{gw.cache.errors.get(p.endpoint.variant(p.variant).ref, 'starting')}")
    chain, kwargs = p.live.chain, _capped(p)
    try:
        result: ChainResult = await within(
            chain.ainvoke(p.messages, executor=gw.pool, **kwargs),
            max(deadline - time.perf_counter(), 0.0))
    except asyncio.TimeoutError:
        raise BackendTimeoutError(
            f"endpoint {p.endpoint_name!r}: no answer within {p.endpoint.limits.timeout_s:g} s"
        ) from None
    except LlmopsError:
        raise
    except Exception as exc:  # a chain's own bug: the variant failed, not the gateway
        raise BackendError(f"variant {p.variant} failed: {type(exc).__name__}: {exc}") from exc
    return result


# -- rows ---------------------------------------------------------------------------------
def _row(p: Plan, status: int, result: ChainResult | None = None, error: str | None = None,
         *, shadow_of: str | None = None) -> RequestRow:
    lineage = dict(result.lineage) if result else {}
    if p.fallback_from:
        lineage["fallback_from"] = p.fallback_from
        error = error or p.first_error
    return RequestRow(
        id=p.request_id, endpoint=p.endpoint_name, status=status, variant=p.variant,
        chain=p.live.name if p.live else None, chain_version=p.live.version if p.live else None,
        key_id=p.key_id, user=p.user, shadow_of=shadow_of, stream=p.stream,
        messages=p.messages, answer=result.answer if result else None,
        sources=result.sources if result else None, lineage=lineage or None,
        prompt_version=_int(lineage.get("prompt_version")),
        index_version=None if lineage.get("index_version") is None else str(
            lineage["index_version"]),
        latency_ms=round((time.perf_counter() - p.started) * 1000, 2),
        prompt_tokens=_int(lineage.get("prompt_tokens")),
        completion_tokens=_int(lineage.get("completion_tokens")),
        error=error,
    )


def _int(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


async def _commit(gw: Gateway, op: Any) -> None:
    # A client that hangs up cancels only this wait: the write, handed over, still commits.
    await gw.store.submit_async(op)


async def _log_success(gw: Gateway, o: Outcome) -> None:
    p = o.plan
    pt, ct = o.usage
    gw.metrics.observe(p.endpoint_name, p.variant, 200, time.perf_counter() - p.started, pt, ct)
    if gw.options.log_requests:
        await _commit(gw, gw.store.insert_request_op(_row(p, 200, o.result)))


async def _log_failure(gw: Gateway, p: Plan, exc: LlmopsError) -> None:
    status = exc.http_status
    gw.metrics.observe(p.endpoint_name, p.variant, status, time.perf_counter() - p.started)
    gw.metrics.errors.labels(p.endpoint_name, p.variant, type(exc).__name__).inc()
    if gw.options.log_requests:
        row = _row(p, status, error=f"{type(exc).__name__}: {exc}"[:2000])
        try:
            await _commit(gw, gw.store.insert_request_op(row))
        except Exception:
            log.exception("%s: could not log the failed request", p.request_id)


# -- shadow --------------------------------------------------------------------------------
def _shadow(gw: Gateway, p: Plan) -> None:
    name = p.endpoint.shadow
    if name is None or name == p.variant or not gw.options.log_requests:
        return
    live = _live(gw, p.endpoint, name)
    if live is None:
        return
    if len(gw.background) >= p.endpoint.limits.max_concurrency:  # shadows never pile up
        gw.metrics.errors.labels(p.endpoint_name, name, "shadow_skipped").inc()
        return
    sp = Plan(f"{p.request_id}-shadow", p.endpoint_name, p.endpoint, name, live, p.messages,
              p.llm_kwargs, p.key_id, p.user, False)
    gw.spawn(_run_shadow(gw, sp, p.request_id))


async def _run_shadow(gw: Gateway, sp: Plan, parent: str) -> None:
    try:
        result = await _invoke(gw, sp, sp.started + sp.endpoint.limits.timeout_s)
        row = _row(sp, 200, result, shadow_of=parent)
    except Exception as exc:
        gw.metrics.errors.labels(sp.endpoint_name, sp.variant, "shadow").inc()
        row = _row(sp, getattr(exc, "http_status", 500), error=str(exc)[:2000], shadow_of=parent)
    try:
        await _commit(gw, gw.store.insert_request_op(row))
    except Exception:
        log.exception("%s: could not log the shadow answer", sp.request_id)


# -- streaming ------------------------------------------------------------------------------
_END = object()


class _Pump:
    """Runs a chain's LLM stream in a task and hands pieces to the response through a queue."""

    def __init__(self, gw: Gateway, p: Plan) -> None:
        self.gw, self.p = gw, p
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.prepared: Any = None
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        assert self.p.live is not None
        chain, kwargs, pool = self.p.live.chain, _capped(self.p), self.gw.pool
        try:
            self.prepared = await chain.aprepare(self.p.messages, executor=pool)
            async for piece in chain.llm.astream(self.prepared.messages, executor=pool, **kwargs):
                self.queue.put_nowait(piece)
            self.queue.put_nowait(_END)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self.queue.put_nowait(exc)

    def cancel(self) -> None:
        """Stop the upstream stream (the answer is done, failed, or nobody listens)."""
        if self.task is not None and not self.task.done():
            self.task.cancel()

    async def next(self, deadline: float) -> Any:
        try:
            return await within(self.queue.get(), max(deadline - time.perf_counter(), 0.0))
        except asyncio.TimeoutError:
            self.cancel()
            return BackendTimeoutError(
                f"endpoint {self.p.endpoint_name!r}: no answer within "
                f"{self.p.endpoint.limits.timeout_s:g} s")


def _as_error(item: Any, p: Plan) -> LlmopsError | None:
    if isinstance(item, LlmopsError):
        return item
    if isinstance(item, BaseException):
        return BackendError(f"variant {p.variant} failed: {type(item).__name__}: {item}")
    return None


class Stream:
    """A started stream: `pieces()` yields text, then the ChainResult; `close()` ends it.

    `close()` is idempotent and runs however the response ends (done, failed, or
    the client hung up, even before the first byte), so the endpoint's slot is
    always given back and an unfinished row says why.
    """

    def __init__(self, gw: Gateway, p: Plan, pump: _Pump, first: Any, deadline: float,
                 slot: _Slot) -> None:
        self.gw, self.p, self.pump, self.first, self.deadline = gw, p, pump, first, deadline
        self.slot = slot
        self.sent: list[str] = []
        self.done = self.closed = False

    async def pieces(self) -> AsyncIterator[str | ChainResult]:
        gw, p = self.gw, self.p
        try:
            item = self.first
            while item is not _END:
                err = _as_error(item, p)
                if err is not None:
                    self.done = True
                    await _finish_failed(gw, p, err)
                    raise err
                self.sent.append(item)
                yield item
                item = await self.pump.next(self.deadline)
            text = "".join(self.sent)
            assert p.live is not None
            result = p.live.chain.finish(
                self.pump.prepared,
                Generation(text, p.live.chain.llm.model_id, 0, len(text.split())))
            pt, ct = int(result.lineage.get("prompt_tokens") or 0), len(text.split())
            gw.metrics.observe(p.endpoint_name, p.variant, 200, time.perf_counter() - p.started,
                               pt, ct)
            if gw.options.log_requests:
                row = _row(p, 200, result)
                await _commit(gw, gw.store.update_request_op(
                    p.request_id, **{k: v for k, v in row.__dict__.items() if k != "id"}))
            self.done = True
            yield result
        finally:
            self.close()
        _shadow(gw, p)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.pump.cancel()
        self.slot.__exit__()
        if not self.done:  # the client hung up
            p, gw = self.p, self.gw
            gw.metrics.observe(p.endpoint_name, p.variant, 499, time.perf_counter() - p.started)
            if gw.options.log_requests:  # not awaited: nobody is left to answer
                gw.store.submit_async(gw.store.update_request_op(
                    p.request_id, status=499, answer="".join(self.sent),
                    error="client closed the stream",
                    latency_ms=round((time.perf_counter() - p.started) * 1000, 2)))


async def start_stream(gw: Gateway, p: Plan) -> Stream:
    """Start streaming; returns once the first piece is there (errors before it get a status).

    The row is committed (status 0, streaming) before this returns, so the 200
    that follows has its row; the final answer updates it before `[DONE]`.
    """
    slot = _Slot(gw, p)
    slot.__enter__()
    try:
        deadline = p.started + p.endpoint.limits.timeout_s
        pump, first = await _first_piece(gw, p, deadline)
        if gw.options.log_requests:
            await _commit(gw, gw.store.insert_request_op(_row(p, 0)))
    except LlmopsError as exc:
        slot.__exit__()
        await _log_failure(gw, p, exc)
        raise
    except BaseException:
        slot.__exit__()
        raise
    return Stream(gw, p, pump, first, deadline, slot)


async def _first_piece(gw: Gateway, p: Plan, deadline: float) -> tuple[_Pump, Any]:
    for attempt in range(2):
        if p.live is None:
            exc: LlmopsError = BusyError(f"variant {p.variant} of {p.endpoint_name!r} is not loaded")
        else:
            pump = _Pump(gw, p)
            pump.start()
            first = await pump.next(deadline)
            err = _as_error(first, p)
            if err is None:
                return pump, first
            pump.cancel()
            exc = err
        if attempt == 1 or not isinstance(exc, BackendError | ChainError | BusyError) or not (
                _switch_to_fallback(gw, p, exc)):
            raise exc
    raise AssertionError("unreachable")


async def _finish_failed(gw: Gateway, p: Plan, exc: LlmopsError) -> None:
    gw.metrics.observe(p.endpoint_name, p.variant, exc.http_status, time.perf_counter() - p.started)
    gw.metrics.errors.labels(p.endpoint_name, p.variant, type(exc).__name__).inc()
    if gw.options.log_requests:
        await _commit(gw, gw.store.update_request_op(
            p.request_id, status=exc.http_status, error=f"{type(exc).__name__}: {exc}"[:2000],
            latency_ms=round((time.perf_counter() - p.started) * 1000, 2)))
