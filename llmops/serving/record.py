"""The one recorder of chat requests: metrics and the request row, written in one place.

Every way a request ends goes through here: answered, failed, a stream
started (its row committed with status 0 before the 200 goes out), finished,
failed after its first byte, or abandoned by its client, and shadow answers.
A 2xx goes out only after `answered`/`stream_started` returned: the row is
committed. Every commit wait is bounded (`gateway.commit_timeout_s`): past it the
request fails with StoreBusyError (503, Retry-After), never a 2xx.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from llmops.chains.runtime import ChainResult
from llmops.errors import LlmopsError, StoreError
from llmops.lineage import Lineage
from llmops.llm import Generation
from llmops.serving.gateway import Gateway
from llmops.serving.plan import Plan
from llmops.store import RequestRow

log = logging.getLogger("llmops.serving")


@dataclass(frozen=True)
class Outcome:
    """An answered request, as the routes format it: no chain internals needed."""

    plan: Plan
    answer: str
    sources: list[dict[str, Any]]
    lineage: Lineage
    generation: Generation | None = None  # logprobs, tool calls, the other answers of n > 1

    @classmethod
    def of(cls, plan: Plan, result: ChainResult) -> Outcome:
        lineage = result.lineage
        if plan.fallback_from:
            lineage = lineage.with_(fallback_from=plan.fallback_from)
        return cls(plan, result.answer, result.sources, lineage, result.generation)

    @property
    def usage(self) -> tuple[int, int]:
        return self.lineage.usage

    @property
    def finish_reason(self) -> str:
        return self.lineage.finish

    @property
    def chain_label(self) -> str | None:
        return self.plan.live.label if self.plan.live else None


class Recorder:
    """Writes what each request did: Prometheus metrics and its row in the request log."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw

    # -- plain and streamed answers -------------------------------------------------------
    async def answered(self, outcome: Outcome) -> None:
        """An answer is ready: commit its row, count it (then the 2xx may go out)."""
        p = outcome.plan
        if self.gw.options.log_requests:
            try:
                await self._commit(self.gw.store.insert_request_op(
                    row(p, 200, outcome)))
            except LlmopsError as exc:
                self._failure(p, exc)
                raise
        self._observe(p, 200, *outcome.usage)

    async def failed(self, p: Plan, exc: LlmopsError) -> None:
        """The request failed before any byte of an answer went out."""
        self._failure(p, exc)
        if self.gw.options.log_requests:
            try:
                await self._commit(self.gw.store.insert_request_op(
                    row(p, exc.http_status, error=_error(exc))))
            except Exception as log_exc:  # the error answer goes out all the same
                log.warning("%s: could not log the failed request: %s", p.request_id,
                            type(log_exc).__name__)

    async def stream_started(self, p: Plan) -> None:
        """The first piece is there: its row (status 0, streaming) commits before the 200."""
        if self.gw.options.log_requests:
            await self._commit(self.gw.store.insert_request_op(row(p, 0)))

    async def stream_finished(self, outcome: Outcome) -> None:
        """The whole answer went out: its row is completed before `[DONE]`."""
        p = outcome.plan
        if self.gw.options.log_requests:
            values = {k: v for k, v in row(p, 200, outcome).__dict__.items() if k != "id"}
            await self._commit(self.gw.store.update_request_op(p.request_id,
                                                                            **values))
        self._observe(p, 200, *outcome.usage)

    async def stream_failed(self, p: Plan, exc: LlmopsError, answer: str | None = None) -> None:
        """The stream broke after its 200 went out (the chain, or the log itself, failed)."""
        self._failure(p, exc)
        if self.gw.options.log_requests:
            values: dict[str, Any] = {"status": exc.http_status, "error": _error(exc),
                                      "latency_ms": _ms(p)}
            if answer is not None:
                values["answer"] = answer
            try:
                await self._commit(self.gw.store.update_request_op(
                    p.request_id, **values))
            except Exception as log_exc:  # the error event goes out all the same
                log.warning("%s: could not log the broken stream: %s", p.request_id,
                            type(log_exc).__name__)

    def stream_abandoned(self, p: Plan, sent: str) -> None:
        """The client hung up mid-stream: its row says so (not awaited: nobody is left)."""
        self.gw.metrics.observe(p.endpoint_name, p.variant, 499, time.perf_counter() - p.started)
        if self.gw.options.log_requests:
            try:
                self.gw.store.submit_async(self.gw.store.update_request_op(
                    p.request_id, status=499, answer=sent, error="client closed the stream",
                    latency_ms=_ms(p)))
            except LlmopsError as exc:  # the log is full or closed: nobody waits for this
                log.warning("%s: could not log the abandoned stream: %s", p.request_id, exc)

    def variant_failed(self, p: Plan, exc: Exception) -> None:
        """A variant failed; the request may still be answered by the fallback."""
        self.gw.metrics.errors.labels(p.endpoint_name, p.variant, type(exc).__name__).inc()

    # -- shadows ----------------------------------------------------------------------------
    async def shadow(self, sp: Plan, parent: str, outcome: Outcome | None,
                     exc: Exception | None = None) -> None:
        """A shadow answer (or its failure), logged and never returned."""
        if outcome is not None:
            shadow_row = row(sp, 200, outcome, shadow_of=parent)
        else:
            self.gw.metrics.errors.labels(sp.endpoint_name, sp.variant, "shadow").inc()
            shadow_row = row(sp, getattr(exc, "http_status", 500), error=str(exc)[:2000],
                             shadow_of=parent)
        try:
            await self._commit(self.gw.store.insert_request_op(shadow_row))
        except Exception as exc:
            log.warning("%s: could not log the shadow answer: %s", sp.request_id,
                        type(exc).__name__)

    def shadow_skipped(self, p: Plan, variant: str) -> None:
        self.gw.metrics.errors.labels(p.endpoint_name, variant, "shadow_skipped").inc()

    # -- helpers ------------------------------------------------------------------------------
    async def _commit(self, op: Any) -> Any:
        """`op` committed within the commit timeout; a database failure is a StoreError
        (its text names no statement parameter: the engines hide them)."""
        try:
            return await self.gw.store.commit_async(op)
        except LlmopsError:
            raise
        except Exception as exc:
            raise StoreError(f"the request log could not record the request: "
                             f"{type(exc).__name__}") from exc

    def _observe(self, p: Plan, status: int, prompt_tokens: int = 0,
                 completion_tokens: int = 0) -> None:
        self.gw.metrics.observe(p.endpoint_name, p.variant, status,
                                time.perf_counter() - p.started, prompt_tokens, completion_tokens)

    def _failure(self, p: Plan, exc: LlmopsError) -> None:
        self._observe(p, exc.http_status)
        self.gw.metrics.errors.labels(p.endpoint_name, p.variant, type(exc).__name__).inc()


def row(p: Plan, status: int, outcome: Outcome | None = None, error: str | None = None, *,
        shadow_of: str | None = None) -> RequestRow:
    """The request log's row for a plan and how it ended."""
    lin = outcome.lineage if outcome is not None else None
    if p.fallback_from:
        lin = (lin or Lineage()).with_(fallback_from=p.fallback_from)
        error = error or p.first_error
    return RequestRow(
        id=p.request_id, endpoint=p.endpoint_name, status=status, variant=p.variant,
        chain=p.live.name if p.live else None, chain_version=p.live.version if p.live else None,
        key_id=p.key_id, user=p.user, shadow_of=shadow_of, stream=p.stream,
        messages=p.messages, answer=outcome.answer if outcome else None,
        sources=outcome.sources if outcome else None, lineage=lin,
        prompt_version=lin.prompt_version if lin else None,
        index_version=lin.index_version if lin else None,
        latency_ms=_ms(p),
        prompt_tokens=lin.prompt_tokens if lin else None,
        completion_tokens=lin.completion_tokens if lin else None,
        error=error,
    )


def _ms(p: Plan) -> float:
    return round((time.perf_counter() - p.started) * 1000, 2)


def _error(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"[:2000]
