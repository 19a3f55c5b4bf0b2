"""The `openai` backend: any OpenAI-compatible chat endpoint (vLLM, TGI, OpenAI, our gateway).

One implementation, async: requests go through the event loop's shared
aiohttp session (`http_session()`: pooled, keep-alive, shared by every openai
backend on that loop), and one retry loop (`_open`) serves plain and streamed
calls alike. The sync API runs the same coroutines on a private event loop in
a daemon thread, so notebooks, evaluation threads and `mlflow.pyfunc` get the
same behaviour as the gateway.

Retries: 429 (honouring Retry-After), 408, 409, 5xx and connection errors,
with exponential backoff; other 4xx fail at once with the server's message.
A stream is retried only before its first byte. `timeout_s` bounds the
connection and each wait for data (not the whole stream). Streams ask for
usage (`stream_options.include_usage`), so a streamed answer's tokens are the
server's count.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import itertools
import os
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Coroutine, Iterator, Sequence
from concurrent.futures import Executor
from typing import Any, TypeVar, cast

from pydantic import Field, model_validator

from llmops.errors import BackendError, BackendTimeoutError
from llmops.llm import stops
from llmops.llm.base import (
    LLM,
    Generation,
    LLMOptions,
    Messages,
    Piece,
    TokenLogprob,
    check_options,
    register_backend,
)
from llmops.llm.wire import DONE, ToolCalls, error_text, logprobs_of, sse_event

T = TypeVar("T")
RETRYABLE = {408, 409, 429, 500, 502, 503, 504}
MAX_CONNECTIONS = 256  # to all upstreams together, per event loop
sleep = asyncio.sleep  # the backoff's wait: the seam tests fill to observe it


class OpenAIOptions(LLMOptions):
    """An OpenAI-compatible endpoint and how patiently to call it."""

    base_url: str | None = Field(None, description="endpoint, e.g. http://host/v1 "
                                 "(default: the OPENAI_BASE_URL variable)")
    api_key_env: str = Field("OPENAI_API_KEY", description="variable holding the key")
    timeout_s: float = Field(60.0, gt=0, description="connection and each wait for data, s")
    max_retries: int = Field(3, ge=0, le=10, description="retries of retryable errors")
    stream_usage: bool = Field(True, description="ask streams for usage (include_usage)")

    @model_validator(mode="after")
    def _needs_an_endpoint(self) -> OpenAIOptions:
        if not (self.base_url or os.environ.get("OPENAI_BASE_URL")):
            raise ValueError("base_url: set llm.base_url or the OPENAI_BASE_URL variable")
        return self


@register_backend("openai")
class OpenAILLM(LLM):
    """Calls `<base_url>/chat/completions`; see the module docstring for retries."""

    Options = OpenAIOptions
    # all passed upstream; stop is also cut here if the upstream did not; the tool calls
    # and log probabilities the upstream returns come back in the Generation
    honours = frozenset({"stop", "top_p", "presence_penalty", "frequency_penalty",
                         "response_format", "logprobs", "top_logprobs", "tools", "tool_choice",
                         "parallel_tool_calls"})
    options: OpenAIOptions

    def __init__(self, options: LLMOptions) -> None:
        super().__init__(options)
        assert isinstance(options, OpenAIOptions)
        self.base_url = (options.base_url or os.environ["OPENAI_BASE_URL"]).rstrip("/")
        self.url = f"{self.base_url}/chat/completions"
        key = os.environ.get(options.api_key_env, "")
        self._headers = {"Content-Type": "application/json",
                         **({"Authorization": f"Bearer {key}"} if key else {})}
        self._proxy = _env_proxy(self.url)  # as httpx would (trust_env), resolved once
        self._timeout: Any = None

    # -- the request ---------------------------------------------------------------
    def _body(self, messages: Messages, max_tokens: int | None, temperature: float | None,
              seed: int | None, stream: bool, stop: Sequence[str] = (),
              sampling: dict[str, Any] | None = None) -> bytes:
        import orjson

        o = self.options
        body: dict[str, Any] = {
            "model": o.model or "default", "messages": messages,
            "max_tokens": max_tokens or o.max_tokens,
            "temperature": o.temperature if temperature is None else temperature,
            "stream": stream,
        }
        if seed is not None:
            body["seed"] = seed
        if stop:
            body["stop"] = list(stop)
        body.update(check_options(self, sampling or {}))
        if stream and o.stream_usage:
            body["stream_options"] = {"include_usage": True}
        return orjson.dumps(body)

    def _client_timeout(self) -> Any:
        if self._timeout is None:
            import aiohttp

            t = self.options.timeout_s
            self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=t, sock_read=t)
        return self._timeout

    async def _open(self, payload: bytes) -> Any:
        """The response to a POST, once its status is below 400: the one retry loop.

        The caller reads and releases it.
        """
        import aiohttp

        session = http_session()
        for attempt in itertools.count():
            retry_after = None
            try:
                resp = await session.post(self.url, data=payload, headers=self._headers,
                                          timeout=self._client_timeout(), proxy=self._proxy)
            except asyncio.TimeoutError as exc:  # aiohttp's timeouts subclass it
                failure: BackendError = BackendTimeoutError(
                    f"{self.base_url}: no answer within {self.options.timeout_s:g} s "
                    f"after {attempt + 1} attempt(s)")
                cause: BaseException | None = exc
            except aiohttp.ClientError as exc:
                failure, cause = BackendError(f"{self.base_url}: connection failed: {exc}"), exc
            else:
                if resp.status < 400:
                    return resp
                try:
                    raw = await resp.read()
                finally:
                    resp.release()
                failure = BackendError(f"{self.base_url}: HTTP {resp.status}: {error_text(raw)}")
                cause, retry_after = None, resp.headers.get("retry-after")
                if resp.status not in RETRYABLE:
                    raise failure
            if attempt >= self.options.max_retries:
                raise failure from cause
            await sleep(_backoff(attempt, retry_after))
        raise AssertionError("unreachable")

    # -- async: the implementation -----------------------------------------------------
    async def agenerate(self, messages: Messages, *, max_tokens: int | None = None,
                        temperature: float | None = None, seed: int | None = None,
                        stop: Sequence[str] = (),
                        executor: Executor | None = None, **sampling: Any) -> Generation:
        import orjson

        start = time.perf_counter()
        resp = await self._open(self._body(messages, max_tokens, temperature, seed, False, stop,
                                           sampling))
        try:
            raw = await resp.read()
        except asyncio.TimeoutError as exc:
            raise BackendTimeoutError(
                f"{self.base_url}: no data within {self.options.timeout_s:g} s") from exc
        finally:
            resp.release()
        try:
            data = orjson.loads(raw)
            choice = data["choices"][0]
            usage = data.get("usage") or {}
            # the upstream ends at a stop sequence; one that does not is cut here
            text, hit = stops.cut(choice["message"]["content"] or "", stop)
            return Generation(
                text, data.get("model") or self.model_id,
                _count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens")),
                "stop" if hit else choice.get("finish_reason") or "stop",
                time.perf_counter() - start, logprobs=logprobs_of(choice.get("logprobs")),
                tool_calls=tuple(choice["message"].get("tool_calls") or ()))
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise BackendError(f"{self.base_url}: malformed completion: {exc!r}") from exc

    async def astream(self, messages: Messages, *, max_tokens: int | None = None,
                      temperature: float | None = None, seed: int | None = None,
                      stop: Sequence[str] = (),
                      executor: Executor | None = None, **sampling: Any) -> AsyncIterator[Piece]:
        import aiohttp

        start = time.perf_counter()
        resp = await self._open(self._body(messages, max_tokens, temperature, seed, True, stop,
                                           sampling))
        scan = stops.StopScanner(stop)
        pieces: list[str] = []
        calls = ToolCalls()
        logprobs: list[TokenLogprob] | None = None
        usage: dict[str, Any] = {}
        finish, model = "stop", self.model_id
        try:
            async for raw in resp.content:
                event = sse_event(raw.decode())
                if event is None:
                    continue
                if event is DONE:
                    break
                assert isinstance(event, dict)
                model = event.get("model") or model
                usage = event.get("usage") or usage
                for choice in event.get("choices") or ():
                    finish = choice.get("finish_reason") or finish
                    delta = choice.get("delta") or {}
                    calls.feed(delta.get("tool_calls"))
                    if (more := logprobs_of(choice.get("logprobs"))) is not None:
                        logprobs = [*(logprobs or ()), *more]
                    piece = delta.get("content")
                    if piece and not scan.hit:
                        piece = scan.feed(piece)
                        if piece:
                            pieces.append(piece)
                            yield piece
            tail = scan.rest()
            if tail:
                pieces.append(tail)
                yield tail
        except asyncio.TimeoutError as exc:
            raise BackendTimeoutError(
                f"{self.base_url}: no data within {self.options.timeout_s:g} s") from exc
        except aiohttp.ClientError as exc:
            raise BackendError(f"{self.base_url}: stream failed: {exc}") from exc
        finally:
            resp.release()
        yield Generation("".join(pieces), model, _count(usage.get("prompt_tokens")),
                         _count(usage.get("completion_tokens")), "stop" if scan.hit else finish,
                         time.perf_counter() - start,
                         logprobs=None if logprobs is None else tuple(logprobs),
                         tool_calls=calls.done())

    # -- sync: the same coroutines on a private loop ---------------------------------------
    def generate(self, messages: Messages, *, max_tokens: int | None = None,
                 temperature: float | None = None, seed: int | None = None,
                 stop: Sequence[str] = (), **sampling: Any) -> Generation:
        return _run_sync(self.agenerate(messages, max_tokens=max_tokens,
                                        temperature=temperature, seed=seed, stop=stop,
                                        **cast(dict[str, Any], sampling)))

    def stream(self, messages: Messages, *, max_tokens: int | None = None,
               temperature: float | None = None, seed: int | None = None,
               stop: Sequence[str] = (), **sampling: Any) -> Iterator[Piece]:
        agen = cast(AsyncGenerator[Piece, None], self.astream(
            messages, max_tokens=max_tokens, temperature=temperature, seed=seed, stop=stop,
                                        **cast(dict[str, Any], sampling)))
        try:
            while True:
                try:
                    yield _run_sync(_anext(agen))
                except StopAsyncIteration:
                    return
        finally:
            _run_sync(agen.aclose())


async def _anext(agen: AsyncIterator[T]) -> T:
    return await agen.__anext__()


def _backoff(attempt: int, retry_after: str | None) -> float:
    if retry_after:
        try:
            return min(float(retry_after), 60.0)
        except ValueError:
            pass
    return min(0.25 * 2**attempt, 8.0)


def _count(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) else None


def _env_proxy(url: str) -> str | None:
    """The proxy that the environment (HTTP_PROXY, NO_PROXY, ...) names for `url`."""
    import urllib.parse
    import urllib.request

    parts = urllib.parse.urlsplit(url)
    if parts.hostname and urllib.request.proxy_bypass(parts.hostname):
        return None
    return urllib.request.getproxies().get(parts.scheme)


# -- sessions: one per event loop ----------------------------------------------------------
_SESSIONS: dict[asyncio.AbstractEventLoop, Any] = {}


def http_session() -> Any:
    """The running loop's shared `aiohttp.ClientSession` (made on first use)."""
    import aiohttp

    loop = asyncio.get_running_loop()
    session = _SESSIONS.get(loop)
    if session is None or session.closed:
        for old in [lp for lp in _SESSIONS if lp.is_closed()]:  # loops gone without aclose
            _SESSIONS.pop(old).detach()
        session = _SESSIONS[loop] = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS, ttl_dns_cache=300),
            auto_decompress=True, raise_for_status=False)
    return session


async def aclose() -> None:
    """Close the running loop's shared HTTP session (the gateway does it at shutdown)."""
    session = _SESSIONS.pop(asyncio.get_running_loop(), None)
    if session is not None:
        await session.close()


_sync_loop: asyncio.AbstractEventLoop | None = None
_sync_lock = threading.Lock()


def _run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` on the process's private event loop (a daemon thread) and wait for it."""
    global _sync_loop
    with _sync_lock:
        if _sync_loop is None or _sync_loop.is_closed():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="llmops-openai-sync",
                             daemon=True).start()
            _sync_loop = loop
            atexit.register(_close_sync_loop, loop)
        loop = _sync_loop
    return asyncio.run_coroutine_threadsafe(coro, loop).result()


def _close_sync_loop(loop: asyncio.AbstractEventLoop) -> None:
    """At exit: close the private loop's HTTP session (no "unclosed session" warnings)."""
    if loop.is_running():
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(aclose(), loop).result(timeout=2)
