"""Log probabilities and several answers on the local backend (the real SmolLM2), and the
openai backend's tool calls put together from stream deltas."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from llmops.llm import create_llm
from llmops.llm.logprobs import _byte_decoder
from llmops.llm.wire import ToolCalls

ASK = [{"role": "user", "content": "What is the capital of France?"}]


def test_the_byte_alphabet_covers_every_byte_once() -> None:
    decoder = _byte_decoder()
    assert sorted(decoder.values()) == list(range(256)) and len(decoder) == 256
    assert decoder["!"] == ord("!") and decoder["Ġ"] == ord(" ")  # GPT-2's stand-in for space


def test_tool_calls_are_put_together_from_their_deltas() -> None:
    calls = ToolCalls()
    calls.feed([{"index": 0, "id": "c1", "type": "function",
                 "function": {"name": "get", "arguments": ""}}])
    calls.feed([{"index": 1, "id": "c2", "function": {"name": "put", "arguments": "{}"}},
                {"index": 0, "function": {"arguments": '{"a": '}}])
    calls.feed([{"index": 0, "function": {"arguments": "1}"}}])
    assert calls.done() == (
        {"id": "c1", "type": "function", "function": {"name": "get", "arguments": '{"a": 1}'}},
        {"id": "c2", "type": "function", "function": {"name": "put", "arguments": "{}"}})


@pytest.mark.slow
def test_local_logprobs_are_the_models_and_batching_does_not_change_them(home: Path) -> None:
    llm = create_llm({"backend": "local", "max_tokens": 16})
    alone = llm.generate(ASK, logprobs=True, top_logprobs=4)
    assert alone.logprobs is not None and alone.completion_tokens is not None
    assert len(alone.logprobs) == alone.completion_tokens - (alone.finish_reason == "stop")
    assert b"".join(bytes(t.bytes or ()) for t in alone.logprobs).decode().strip() == alone.text
    for t in alone.logprobs:  # greedy: each chosen token is the best one at its place
        assert t.top[0].token == t.token and t.top[0].logprob == t.logprob <= 0
        assert [x.logprob for x in t.top] == sorted((x.logprob for x in t.top), reverse=True)
        assert sum(math.exp(x.logprob) for x in t.top) <= 1 + 1e-6
    plain = llm.generate(ASK)
    assert plain.text == alone.text and plain.logprobs is None
    with ThreadPoolExecutor(4) as pool:  # rows with and without logprobs share batches
        outs = list(pool.map(lambda kw: llm.generate(ASK, **kw),
                             [{"logprobs": True, "top_logprobs": 4}, {}] * 2))
    assert [o.text for o in outs] == [alone.text] * 4
    for o in outs[0::2]:
        assert o.logprobs is not None and [(t.token, round(t.logprob, 4)) for t in o.logprobs] == [
            (t.token, round(t.logprob, 4)) for t in alone.logprobs]
    # a stop sequence: the tokens past it are not the answer's
    cut = llm.generate(ASK, stop=["France"], logprobs=True)
    assert cut.logprobs is not None
    assert "".join(t.token for t in cut.logprobs).strip() == cut.text == "The capital of"


@pytest.mark.slow
def test_local_n_answers_share_a_batch_and_seed_each_one(home: Path) -> None:
    llm = create_llm({"backend": "local", "max_tokens": 8})
    one = llm.generate(ASK)
    three = llm.generate(ASK, n=3)
    assert [three.text, *(a.text for a in three.alternatives)] == [one.text] * 3
    assert three.completion_tokens == 3 * (one.completion_tokens or 0)
    sampled = llm.generate(ASK, n=3, temperature=1.8, seed=9)
    texts = [sampled.text, *(a.text for a in sampled.alternatives)]
    assert len(set(texts)) > 1  # each answer has its own seed (9, 10, 11) ...
    again = llm.generate(ASK, n=3, temperature=1.8, seed=9)
    assert [again.text, *(a.text for a in again.alternatives)] == texts  # ... so they repeat
    assert llm.generate(ASK, temperature=1.8, seed=10).text == texts[1]
    *pieces, last = list(llm.stream(ASK, n=2))
    assert "".join(p for p in pieces if isinstance(p, str)) == one.text
    assert [a.text for a in last.alternatives] == [one.text]  # type: ignore[union-attr]
    with pytest.raises(Exception, match=r"n must be an integer within \[1, 8\]"):
        llm.generate(ASK, n=9)
