"""The openai backend against a real server on loopback: retries, timeouts, errors, sessions.

Its sync API runs the async implementation on a private loop, so each case runs
through both (`api`): one table, one retry loop under test.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from llmops.errors import BackendError, BackendTimeoutError
from llmops.llm import LLM, Generation, create_llm
from llmops.llm import openai as openai_backend
from tests.mock_openai import Fault, MockOpenAI, free_port

MSGS = [{"role": "user", "content": "What is a list comprehension?"}]


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The backoff waits, recorded instead of slept (the backend's `sleep` seam)."""
    waited: list[float] = []

    async def record(seconds: float) -> None:
        waited.append(seconds)

    monkeypatch.setattr(openai_backend, "sleep", record)
    return waited


def _sync(llm: LLM) -> Generation:
    return llm.generate(MSGS)


def _async(llm: LLM) -> Generation:
    async def body() -> Generation:
        try:
            return await llm.agenerate(MSGS)
        finally:
            await openai_backend.aclose()

    return asyncio.run(body())


def _stream(llm: LLM) -> Generation:
    *_, last = list(llm.stream(MSGS))
    assert isinstance(last, Generation)
    return last


API = pytest.mark.parametrize("api", [_sync, _async, _stream], ids=["sync", "async", "stream"])


def backend(url: str, **kw: Any) -> LLM:
    return create_llm({"backend": "openai", "base_url": url, "model": "m", **kw})


@API
@pytest.mark.parametrize(
    ("faults", "calls", "waits"),
    [
        ([Fault(429, retry_after="2")], 2, [2.0]),  # honours Retry-After
        ([Fault(503), Fault(500)], 3, [0.25, 0.5]),  # 5xx: exponential backoff
        ([Fault(429, retry_after="1"), Fault(502)], 3, [1.0, 0.5]),
    ],
)
def test_retryable_errors_are_retried(server: MockOpenAI, sleeps: list[float], api: Callable,
                                      faults: list[Fault], calls: int, waits: list[float]) -> None:
    server.fail(*faults)
    assert api(backend(server.base_url)).text.startswith("mock answer")
    assert server.state.calls == calls
    assert sleeps == waits


@API
@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_other_errors_fail_at_once_with_the_servers_message(
    server: MockOpenAI, sleeps: list[float], api: Callable, status: int
) -> None:
    server.fail(Fault(status, message="you did something wrong"))
    with pytest.raises(BackendError, match=f"HTTP {status}: you did something wrong"):
        api(backend(server.base_url))
    assert server.state.calls == 1 and sleeps == []


@API
def test_gives_up_after_max_retries(server: MockOpenAI, sleeps: list[float],
                                    api: Callable) -> None:
    server.fail(*[Fault(503)] * 5)
    with pytest.raises(BackendError, match="HTTP 503"):
        api(backend(server.base_url, max_retries=2))
    assert server.state.calls == 3 and sleeps == [0.25, 0.5]


@API
def test_a_silent_server_times_out(server: MockOpenAI, sleeps: list[float],
                                   api: Callable) -> None:
    server.fail(Fault(200, delay_s=1.0), Fault(200, delay_s=1.0))
    start = time.monotonic()
    with pytest.raises(BackendTimeoutError, match=r"no answer within 0.2 s after 2 attempt"):
        api(backend(server.base_url, timeout_s=0.2, max_retries=1))
    assert time.monotonic() - start < 3 and sleeps == [0.25]


@API
def test_a_closed_port_is_retried_then_reported(sleeps: list[float], api: Callable) -> None:
    with pytest.raises(BackendError, match="connection failed"):
        api(backend(f"http://127.0.0.1:{free_port()}/v1", max_retries=2))
    assert sleeps == [0.25, 0.5]


def test_the_request_carries_the_call_options(server: MockOpenAI) -> None:
    llm = backend(server.base_url, temperature=0.3, max_tokens=50)
    llm.generate(MSGS, max_tokens=33, temperature=0.5, seed=7)
    list(llm.stream(MSGS))
    plain, streamed = server.state.bodies
    assert (plain["max_tokens"], plain["temperature"], plain["seed"], plain["stream"]) == (
        33, 0.5, 7, False)
    assert "stream_options" not in plain
    assert (streamed["max_tokens"], streamed["temperature"], streamed["stream"]) == (50, 0.3, True)
    assert streamed["stream_options"] == {"include_usage": True}
    list(backend(server.base_url, stream_usage=False).stream(MSGS))
    assert "stream_options" not in server.state.bodies[-1]


def test_a_stream_without_usage_reports_unknown_tokens(server: MockOpenAI) -> None:
    *pieces, last = list(backend(server.base_url, stream_usage=False).stream(MSGS))
    assert isinstance(last, Generation) and last.text == "".join(pieces)  # type: ignore[arg-type]
    assert (last.prompt_tokens, last.completion_tokens) == (None, None)  # never word counts


def test_a_stream_is_retried_before_its_first_byte_only(server: MockOpenAI,
                                                         sleeps: list[float]) -> None:
    server.fail(Fault(500, message="stream broke"), Fault(500, message="stream broke"))
    with pytest.raises(BackendError, match="HTTP 500: stream broke"):
        list(backend(server.base_url, max_retries=1).stream(MSGS))
    assert server.state.calls == 2 and sleeps == [0.25]


def test_one_shared_session_per_event_loop() -> None:
    async def body() -> None:
        first = openai_backend.http_session()
        assert openai_backend.http_session() is first  # every openai backend on this loop
        await openai_backend.aclose()
        assert first.closed and openai_backend.http_session() is not first
        await openai_backend.aclose()

    asyncio.run(body())


def test_cancelling_the_await_stops_the_call(server: MockOpenAI) -> None:
    server.state.delay_s = 2.0
    llm = backend(server.base_url)

    async def body() -> None:
        try:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(llm.agenerate(MSGS), 0.2)
        finally:
            await openai_backend.aclose()

    start = time.monotonic()
    asyncio.run(body())
    assert time.monotonic() - start < 1.5


def test_a_sync_only_backend_gets_the_async_api_on_a_thread() -> None:
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from llmops.llm import register_backend

    seen: list[str] = []

    @register_backend("thread-probe-test")
    class Probe(LLM):
        def generate(self, messages, *, max_tokens=None, temperature=None, seed=None):  # type: ignore[no-untyped-def]
            seen.append(threading.current_thread().name)
            return Generation(messages[-1]["content"], "probe", 1, 1)

        def stream(self, messages, *, max_tokens=None, temperature=None, seed=None):  # type: ignore[no-untyped-def]
            seen.append(threading.current_thread().name)
            yield "a"
            yield "b"
            raise BackendError("the stream broke")

    llm = create_llm({"backend": "thread-probe-test"})
    pool = ThreadPoolExecutor(1, thread_name_prefix="probe-pool")

    async def body() -> tuple[Generation, list[Any]]:
        gen = await llm.agenerate(MSGS, executor=pool)
        pieces: list[Any] = []
        with pytest.raises(BackendError, match="the stream broke"):
            async for piece in llm.astream(MSGS, executor=pool):
                pieces.append(piece)
        return gen, pieces

    gen, pieces = asyncio.run(body())
    pool.shutdown()
    assert gen.text == MSGS[0]["content"] and pieces == ["a", "b"]
    assert all(name.startswith("probe-pool") for name in seen) and len(seen) == 2
