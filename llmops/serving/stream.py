"""Streaming one chat request: the first piece before the 200, the rest as they come.

The chain's stream (text pieces, then one result with the backend's real
token usage) runs in a task (`_Pump`) that hands items to the response
through a queue, so a deadline bounds every wait. The row is committed with
status 0 before the 200 (a 2xx means logged) and completed before `[DONE]`;
a client that hangs up leaves a row that says so.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from llmops.chains.runtime import ChainResult
from llmops.errors import BackendError, BackendTimeoutError, LlmopsError
from llmops.serving.answer import FALLBACK_ON, Slot, fall_back, not_loaded, shadow, within
from llmops.serving.gateway import Gateway
from llmops.serving.plan import Plan
from llmops.serving.record import Outcome, Recorder

_END = object()


class _Pump:
    """Runs a chain's stream in a task and hands its items to the response through a queue."""

    def __init__(self, gw: Gateway, p: Plan) -> None:
        self.gw, self.p = gw, p
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        assert self.p.live is not None
        try:
            async for item in self.p.live.chain.astream(self.p.inputs, executor=self.gw.pool,
                                                        **self.p.chain_kwargs()):
                self.queue.put_nowait(item)  # text pieces, then the ChainResult
            self.queue.put_nowait(_END)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self.queue.put_nowait(exc)

    def cancel(self) -> None:
        """Stop the chain's stream (the answer is done, failed, or nobody listens)."""
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
    """A started stream: `pieces()` yields text, then the Outcome; `close()` ends it.

    `close()` is idempotent and runs however the response ends (done, failed, or
    the client hung up, even before the first byte), so the endpoint's slot is
    always given back and an unfinished row says why.
    """

    def __init__(self, gw: Gateway, p: Plan, pump: _Pump, first: Any, slot: Slot,
                 rec: Recorder) -> None:
        self.gw, self.p, self.pump, self.first, self.slot, self.rec = gw, p, pump, first, slot, rec
        self.sent: list[str] = []
        self.done = self.closed = False

    async def pieces(self) -> AsyncIterator[str | Outcome]:
        p = self.p
        try:
            item, result = self.first, None
            while item is not _END:
                err = _as_error(item, p)
                if err is not None:
                    await self._fail(err)
                    raise err
                if isinstance(item, ChainResult):
                    result = item
                else:
                    self.sent.append(item)
                    yield item
                item = await self.pump.next(p.deadline)
            if result is None:
                err = BackendError(f"variant {p.variant}: the chain's stream ended without "
                                   "its result")
                await self._fail(err)
                raise err
            outcome = Outcome.of(p, result)
            try:
                await self.rec.stream_finished(outcome)
            except LlmopsError as err:  # the log failed: an error event, never a clean [DONE]
                await self._fail(err)
                raise
            self.done = True
            yield outcome
        finally:
            self.close()
        shadow(self.gw, p, self.rec)

    async def _fail(self, err: LlmopsError) -> None:
        """The stream ends with an error after its 200: its row says so (not 499)."""
        self.done = True
        err.request_id = self.p.request_id
        await self.rec.stream_failed(self.p, err, "".join(self.sent))

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.pump.cancel()
        self.slot.__exit__()
        if not self.done:  # the client hung up
            self.rec.stream_abandoned(self.p, "".join(self.sent))


async def start_stream(gw: Gateway, p: Plan) -> Stream:
    """Start streaming; returns once the first piece is there (errors before it get a status).

    The row is committed (status 0, streaming) before this returns, so the 200
    that follows has its row; the final answer updates it before `[DONE]`.
    """
    rec = Recorder(gw)
    slot = Slot(gw, p).__enter__()
    await slot.shared()
    try:
        pump, first = await _first_piece(gw, p, rec)
        await rec.stream_started(p)
    except LlmopsError as exc:
        slot.__exit__()
        exc.request_id = p.request_id  # for the client
        await rec.failed(p, exc)
        raise
    except BaseException:
        slot.__exit__()
        raise
    return Stream(gw, p, pump, first, slot, rec)


async def _first_piece(gw: Gateway, p: Plan, rec: Recorder) -> tuple[_Pump, Any]:
    for attempt in range(2):
        if p.live is None:
            exc: LlmopsError = not_loaded(gw, p)
        else:
            pump = _Pump(gw, p)
            pump.start()
            first = await pump.next(p.deadline)
            err = _as_error(first, p)
            if err is None:
                return pump, first
            pump.cancel()
            exc = err
        if attempt == 1 or not isinstance(exc, FALLBACK_ON) or not fall_back(gw, p, exc, rec):
            raise exc
    raise AssertionError("unreachable")
