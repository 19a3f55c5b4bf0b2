"""LLM backends: the registry, and the openai backend against a real server on loopback."""

from __future__ import annotations

import time
from collections.abc import Iterator

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
