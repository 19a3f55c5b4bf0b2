"""One contract, every backend: plain and streamed, sync and async, usage and limits.

The same checks run over `fake`, `openai` (against the mock server on loopback) and
`local` (the real SmolLM2, marked slow). A backend of one's own can join the table.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from llmops.llm import LLM, Generation, create_llm, text_of
from tests.mock_openai import MockOpenAI

QUESTION = [{"role": "user", "content": "What is a list comprehension in Python?"}]


@pytest.fixture(params=["fake", "openai", pytest.param("local", marks=pytest.mark.slow)])
def llm(request: pytest.FixtureRequest, server: MockOpenAI) -> LLM:
    kind = request.param
    if kind == "openai":
        return create_llm({"backend": "openai", "base_url": server.base_url, "model": "m",
                           "max_tokens": 12})
    if kind == "local":
        request.getfixturevalue("home")  # settings, and the session's converted model
    return create_llm({"backend": kind, "max_tokens": 12})


def _closing(coro: Any) -> Any:
    """Run `coro` on a fresh loop and close that loop's shared HTTP session after."""
    from llmops.llm.openai import aclose

    async def body() -> Any:
        try:
            return await coro
        finally:
            await aclose()

    return asyncio.run(body())


def test_generate_returns_the_text_and_the_backends_usage(llm: LLM) -> None:
    gen = llm.generate(QUESTION)
    assert isinstance(gen, Generation) and gen.text.strip()
    assert isinstance(gen.prompt_tokens, int) and gen.prompt_tokens > 0
    assert isinstance(gen.completion_tokens, int) and 0 < gen.completion_tokens <= 12
    assert gen.finish_reason in ("stop", "length") and gen.latency_s >= 0
    again = llm.generate(QUESTION)  # deterministic: greedy, or scripted
    assert (again.text, again.completion_tokens) == (gen.text, gen.completion_tokens)


def test_stream_yields_pieces_then_one_generation_with_real_usage(llm: LLM) -> None:
    gen = llm.generate(QUESTION)
    *pieces, last = list(llm.stream(QUESTION))
    assert pieces and all(isinstance(p, str) and p for p in pieces)
    assert isinstance(last, Generation)
    assert "".join(pieces) == last.text == gen.text  # deterministic backends
    assert (last.prompt_tokens, last.completion_tokens) == (gen.prompt_tokens,
                                                            gen.completion_tokens)
    assert last.finish_reason == gen.finish_reason
    assert text_of(iter(llm.stream(QUESTION))) == gen.text


def test_max_tokens_is_a_hard_limit_and_says_length(llm: LLM) -> None:
    gen = llm.generate(QUESTION, max_tokens=3)
    assert gen.completion_tokens == 3 and gen.finish_reason == "length"
    *pieces, last = list(llm.stream(QUESTION, max_tokens=3))
    assert isinstance(last, Generation) and last.completion_tokens == 3
    assert last.finish_reason == "length" and "".join(pieces) == last.text == gen.text


def test_the_async_twins_give_the_same_answers(llm: LLM) -> None:
    gen = llm.generate(QUESTION)
    agen = _closing(llm.agenerate(QUESTION))
    assert (agen.text, agen.prompt_tokens, agen.completion_tokens, agen.finish_reason) == (
        gen.text, gen.prompt_tokens, gen.completion_tokens, gen.finish_reason)

    async def stream() -> list[Any]:
        return [p async for p in llm.astream(QUESTION)]

    *pieces, last = _closing(stream())
    assert "".join(pieces) == last.text == gen.text
    assert last.completion_tokens == gen.completion_tokens


def test_stop_ends_the_answer_before_the_first_stop_and_streams_never_pass_it(llm: LLM) -> None:
    full = llm.generate(QUESTION)
    pieces = [p for p in llm.stream(QUESTION) if isinstance(p, str)]
    assert len(pieces) >= 3
    # a stop sequence from the middle of the second piece into the third: the stream
    # must hold back the second piece's tail until it knows
    start = len(pieces[0]) + max(len(pieces[1]) // 2, 1) - 1
    end = len(pieces[0]) + len(pieces[1]) + 1
    stop = "".join(pieces)[start:end]
    assert stop and stop in full.text
    expected = full.text[:full.text.find(stop)]
    gen = llm.generate(QUESTION, stop=["never in it", stop])
    assert gen.text.rstrip() == expected.rstrip() and stop not in gen.text
    assert gen.finish_reason == "stop"
    assert gen.completion_tokens is not None and full.completion_tokens is not None
    assert gen.completion_tokens <= full.completion_tokens
    *streamed, last = list(llm.stream(QUESTION, stop=[stop]))
    assert "".join(streamed) == last.text == gen.text and last.finish_reason == "stop"

    async def collect() -> list[Any]:
        return [p async for p in llm.astream(QUESTION, stop=[stop])]

    *apieces, alast = _closing(collect())
    assert "".join(apieces) == alast.text == gen.text
    assert _closing(llm.agenerate(QUESTION, stop=[stop])).text == gen.text
    # no stop found: the whole answer, as without one
    assert llm.generate(QUESTION, stop=["never in it"]).text == full.text
