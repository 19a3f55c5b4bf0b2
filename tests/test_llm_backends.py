"""LLM backends: the registry, and the openai backend (sync and async) against a real server
on loopback."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from llmops.chains.llm import (
    LLM,
    FakeLLM,
    Generation,
    LLMSpec,
    backends,
    create_llm,
    register_backend,
)
from llmops.errors import BackendError, BackendTimeoutError, ChainError
from tests.mock_openai import Fault, MockOpenAI

MSGS = [{"role": "user", "content": "What is a list comprehension?"}]


@pytest.fixture(scope="module")
def mock() -> Iterator[MockOpenAI]:
    with MockOpenAI() as server:
        yield server


@pytest.fixture
def server(mock: MockOpenAI) -> MockOpenAI:
    mock.state.faults.clear()
    mock.state.calls = 0
    mock.state.bodies.clear()
    mock.state.delay_s = 0.0
    return mock


def openai_llm(server: MockOpenAI, **kw: object) -> LLM:
    llm = create_llm({"backend": "openai", "base_url": server.base_url, "model": "m", **kw})
    sleeps: list[float] = []
    llm.sleep = sleeps.append  # type: ignore[attr-defined]
    llm.sleeps = sleeps  # type: ignore[attr-defined]
    return llm


def test_registry_lists_builtins_and_rejects_unknown_backend() -> None:
    assert {"fake", "local", "openai"} <= set(backends())
    with pytest.raises(ChainError, match=r"unknown LLM backend 'nope'; registered: .*fake"):
        create_llm({"backend": "nope"})


def test_registering_a_backend_and_bad_registrations() -> None:
    @register_backend("echo-test")
    class Echo(LLM):
        def generate(self, messages, *, max_tokens=None, temperature=None, seed=None):  # type: ignore[no-untyped-def]
            return Generation(messages[-1]["content"], "echo", 1, 1)

    assert create_llm({"backend": "echo-test"}).generate(MSGS).text == MSGS[0]["content"]
    with pytest.raises(ValueError, match="already registered"):
        register_backend("echo-test")(FakeLLM)
    with pytest.raises(TypeError, match="must subclass"):
        register_backend("bad")(object)  # type: ignore[arg-type]


def test_llm_spec_rejects_unknown_keys() -> None:
    with pytest.raises(ValueError, match="extra"):
        LLMSpec.model_validate({"backend": "fake", "temprature": 0.2})


def test_fake_is_deterministic_and_streams_the_same_text() -> None:
    llm = create_llm({"backend": "fake"})
    a, b = llm.generate(MSGS), llm.generate(MSGS)
    assert a == b and a.text.startswith("fake answer")
    assert "".join(llm.stream(MSGS)) == a.text


def test_openai_plain_and_streaming(server: MockOpenAI) -> None:
    llm = openai_llm(server)
    gen = llm.generate(MSGS, max_tokens=33, temperature=0.5)
    assert gen.text.startswith("mock answer") and gen.completion_tokens > 0
    assert server.state.bodies[-1]["max_tokens"] == 33
    assert server.state.bodies[-1]["temperature"] == 0.5
    assert "".join(llm.stream(MSGS)) == gen.text


@pytest.mark.parametrize(
    ("faults", "calls", "sleeps"),
    [
        ([Fault(429, retry_after="2")], 2, [2.0]),  # honours Retry-After
        ([Fault(503), Fault(500)], 3, [0.25, 0.5]),  # 5xx: exponential backoff
        ([Fault(429, retry_after="1"), Fault(502)], 3, [1.0, 0.5]),
    ],
)
def test_openai_retries_retryable_errors(
    server: MockOpenAI, faults: list[Fault], calls: int, sleeps: list[float]
) -> None:
    llm = openai_llm(server)
    server.fail(*faults)
    assert llm.generate(MSGS).text.startswith("mock answer")
    assert server.state.calls == calls
    assert llm.sleeps == sleeps  # type: ignore[attr-defined]


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_openai_does_not_retry_other_errors(server: MockOpenAI, status: int) -> None:
    llm = openai_llm(server)
    server.fail(Fault(status, message="you did something wrong"))
    with pytest.raises(BackendError, match=f"HTTP {status}: you did something wrong"):
        llm.generate(MSGS)
    assert server.state.calls == 1


def test_openai_gives_up_after_max_retries(server: MockOpenAI) -> None:
    llm = openai_llm(server, max_retries=2)
    server.fail(*[Fault(503)] * 5)
    with pytest.raises(BackendError, match="HTTP 503"):
        llm.generate(MSGS)
    assert server.state.calls == 3


def test_openai_timeout(server: MockOpenAI) -> None:
    llm = openai_llm(server, timeout_s=0.2, max_retries=1)
    server.fail(Fault(200, delay_s=1.0), Fault(200, delay_s=1.0))
    start = time.monotonic()
    with pytest.raises(BackendTimeoutError, match=r"no answer within 0.2 s after 2 attempt"):
        llm.generate(MSGS)
    assert time.monotonic() - start < 3


def test_openai_connection_error_is_retried_then_reported() -> None:
    from tests.mock_openai import free_port

    llm = create_llm({"backend": "openai", "base_url": f"http://127.0.0.1:{free_port()}/v1",
                      "max_retries": 2})
    sleeps: list[float] = []
    llm.sleep = sleeps.append  # type: ignore[attr-defined]
    with pytest.raises(BackendError, match="connection failed"):
        llm.generate(MSGS)
    assert len(sleeps) == 2


def test_openai_needs_a_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(ChainError, match="base_url"):
        create_llm({"backend": "openai"})


# -- the async API ---------------------------------------------------------------------
def arun(coro_fn: Any) -> Any:
    """Run an async test body on a fresh loop, closing the loop's shared HTTP session after."""
    from llmops.chains import llm as llm_module

    async def body() -> Any:
        try:
            return await coro_fn()
        finally:
            await llm_module.aclose()

    return asyncio.run(body())


def async_openai_llm(server: MockOpenAI, **kw: object) -> LLM:
    llm = openai_llm(server, **kw)
    asleeps: list[float] = []

    async def asleep(seconds: float) -> None:
        asleeps.append(seconds)

    llm.asleep = asleep  # type: ignore[attr-defined]
    llm.asleeps = asleeps  # type: ignore[attr-defined]
    return llm


def test_openai_async_plain_and_streaming_match_the_sync_api(server: MockOpenAI) -> None:
    llm = async_openai_llm(server)

    async def body() -> tuple[Generation, str]:
        gen = await llm.agenerate(MSGS, max_tokens=33, temperature=0.5, seed=7)
        text = "".join([piece async for piece in llm.astream(MSGS)])
        return gen, text

    gen, streamed = arun(body)
    assert gen.text.startswith("mock answer") and gen.completion_tokens > 0
    assert gen.text == llm.generate(MSGS).text == streamed
    sent = server.state.bodies[0]
    assert (sent["max_tokens"], sent["temperature"], sent["seed"], sent["stream"]) == (
        33, 0.5, 7, False)
    assert server.state.bodies[1]["stream"] is True


def test_openai_async_shares_one_session_per_loop() -> None:
    from llmops.chains import llm as llm_module

    async def body() -> None:
        first = llm_module.http_session()
        assert llm_module.http_session() is first  # every openai backend on this loop
        await llm_module.aclose()
        assert first.closed and llm_module.http_session() is not first

    arun(body)


@pytest.mark.parametrize(
    ("faults", "calls", "sleeps"),
    [
        ([Fault(429, retry_after="2")], 2, [2.0]),
        ([Fault(503), Fault(500)], 3, [0.25, 0.5]),
        ([Fault(429, retry_after="1"), Fault(502)], 3, [1.0, 0.5]),
    ],
)
def test_openai_async_retries_retryable_errors(
    server: MockOpenAI, faults: list[Fault], calls: int, sleeps: list[float]
) -> None:
    llm = async_openai_llm(server)
    server.fail(*faults)
    assert arun(lambda: llm.agenerate(MSGS)).text.startswith("mock answer")
    assert server.state.calls == calls
    assert llm.asleeps == sleeps  # type: ignore[attr-defined]
    assert llm.sleeps == []  # type: ignore[attr-defined]  # the loop never blocks


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_openai_async_does_not_retry_other_errors(server: MockOpenAI, status: int) -> None:
    llm = async_openai_llm(server)
    server.fail(Fault(status, message="you did something wrong"))
    with pytest.raises(BackendError, match=f"HTTP {status}: you did something wrong"):
        arun(lambda: llm.agenerate(MSGS))
    assert server.state.calls == 1


def test_openai_async_gives_up_after_max_retries_and_maps_stream_errors(
    server: MockOpenAI,
) -> None:
    llm = async_openai_llm(server, max_retries=2)
    server.fail(*[Fault(503)] * 3)
    with pytest.raises(BackendError, match="HTTP 503"):
        arun(lambda: llm.agenerate(MSGS))
    assert server.state.calls == 3
    server.fail(Fault(500, message="stream broke"))

    async def stream() -> list[str]:
        return [piece async for piece in llm.astream(MSGS)]

    with pytest.raises(BackendError, match="HTTP 500: stream broke"):
        arun(stream)


def test_openai_async_timeout(server: MockOpenAI) -> None:
    llm = async_openai_llm(server, timeout_s=0.2, max_retries=1)
    server.fail(Fault(200, delay_s=1.0), Fault(200, delay_s=1.0))
    start = time.monotonic()
    with pytest.raises(BackendTimeoutError, match=r"no answer within 0.2 s after 2 attempt"):
        arun(lambda: llm.agenerate(MSGS))
    assert time.monotonic() - start < 3
    assert llm.asleeps == [0.25]  # type: ignore[attr-defined]


def test_openai_async_connection_error_is_retried_then_reported() -> None:
    from tests.mock_openai import free_port

    llm = create_llm({"backend": "openai", "base_url": f"http://127.0.0.1:{free_port()}/v1",
                      "max_retries": 2})
    asleeps: list[float] = []

    async def asleep(seconds: float) -> None:
        asleeps.append(seconds)

    llm.asleep = asleep  # type: ignore[attr-defined]
    with pytest.raises(BackendError, match="connection failed"):
        arun(lambda: llm.agenerate(MSGS))
    assert asleeps == [0.25, 0.5]


def test_openai_async_cancellation_stops_the_call(server: MockOpenAI) -> None:
    llm = async_openai_llm(server)
    server.state.delay_s = 2.0

    async def body() -> None:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(llm.agenerate(MSGS), 0.2)

    start = time.monotonic()
    arun(body)
    assert time.monotonic() - start < 1.5


def test_a_sync_only_backend_gets_the_async_api_on_a_thread() -> None:
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

    async def body() -> tuple[Generation, list[str]]:
        gen = await llm.agenerate(MSGS, executor=pool)
        pieces: list[str] = []
        with pytest.raises(BackendError, match="the stream broke"):
            async for piece in llm.astream(MSGS, executor=pool):
                pieces.append(piece)
        return gen, pieces

    gen, pieces = arun(body)
    pool.shutdown()
    assert gen.text == MSGS[0]["content"] and pieces == ["a", "b"]
    assert all(name.startswith("probe-pool") for name in seen) and len(seen) == 2


def test_fake_async_api_matches_the_sync_one() -> None:
    llm = create_llm({"backend": "fake"})

    async def body() -> tuple[Generation, str]:
        return await llm.agenerate(MSGS), "".join([p async for p in llm.astream(MSGS)])

    gen, text = arun(body)
    assert gen == llm.generate(MSGS) and text == gen.text


@pytest.mark.slow
def test_local_backend_generates_streams_and_seeds_like_the_hub(home: object) -> None:
    """The `local` backend and `hub.generate_chat` share one generation path."""
    import torch

    from llmops.hub import generate_chat

    llm = create_llm({"backend": "local", "max_tokens": 16})
    question = [{"role": "user", "content": "What is the capital of France?"}]
    gen = llm.generate(question)
    assert gen.text == generate_chat(question, max_new_tokens=16)
    assert "Paris" in gen.text and gen.prompt_tokens > 0 and 0 < gen.completion_tokens <= 16
    assert "".join(llm.stream(question)).strip() == gen.text  # greedy: the same words streamed

    rng = torch.get_rng_state()
    poem = [{"role": "user", "content": "Write a haiku about the sea."}]
    first = llm.generate(poem, max_tokens=8, temperature=0.9, seed=3)
    assert first.finish_reason == "length" and first.completion_tokens == 8
    assert llm.generate(poem, max_tokens=8, temperature=0.9, seed=3).text == first.text
    assert "".join(llm.stream(poem, max_tokens=8, temperature=0.9, seed=3)).strip() == first.text
    assert torch.equal(torch.get_rng_state(), rng)  # the caller's random state is untouched
