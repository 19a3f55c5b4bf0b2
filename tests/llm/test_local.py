"""The local backend on the real SmolLM2: batched generation is exact, streams come from
batches, a lone caller never waits, seeds repeat, and a caller who leaves frees its row."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import torch

from llmops.llm import Generation, create_llm, generate_chat
from llmops.llm.batching import Batcher, Job, Sampling
from llmops.llm.local import chat_ids
from llmops.llm.penalties import RowRepetitionPenalty

pytestmark = pytest.mark.slow

QUESTIONS = [
    "What is the capital of France?",
    "What is a Python list comprehension? Answer in one sentence.",
    "Name three built-in types of Python.",
    "How do I open a file and read it line by line in Python? Show the code.",
    "What does the yield keyword do?",
    "Why use virtual environments?",
]


def _chat(q: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": q}]


@pytest.fixture
def batcher(home: Path) -> Batcher:
    """A batcher of its own over the shared model (the test reads its statistics)."""
    from llmops.hub import load_causal_lm

    model, tokenizer = load_causal_lm()
    return Batcher(model, tokenizer, max_batch=8)


def _jobs(batcher: Batcher, penalty: float, limit: int = 24) -> list[Job]:
    return [Job(chat_ids(batcher.tokenizer, _chat(q)), limit, Sampling(0.0, penalty))
            for q in QUESTIONS]


@pytest.mark.parametrize("penalty", [1.0, 1.05])
def test_greedy_batches_give_the_tokens_of_one_at_a_time(batcher: Batcher,
                                                         penalty: float) -> None:
    alone = [batcher.submit(job).result() for job in _jobs(batcher, penalty)]
    assert all(r.batch_size == 1 for r in alone)
    together = [f.result() for f in [batcher.submit(j) for j in _jobs(batcher, penalty)]]
    assert max(r.batch_size for r in together) > 1, batcher.sizes
    for one, many, q in zip(alone, together, QUESTIONS, strict=True):
        assert many.token_ids == one.token_ids, q  # token by token
        assert (many.text, many.completion_tokens, many.finish_reason) == (
            one.text, one.completion_tokens, one.finish_reason)


def test_a_batch_of_one_is_what_transformers_generates(batcher: Batcher) -> None:
    job = _jobs(batcher, 1.05)[3]
    ours = batcher.submit(job).result()
    ids = torch.tensor([job.ids])
    with torch.inference_mode():
        out = batcher.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                     max_new_tokens=24, do_sample=False, temperature=None,
                                     top_p=None, top_k=None, repetition_penalty=1.05,
                                     pad_token_id=batcher.pad_id)
    assert list(ours.token_ids) == out[0, ids.shape[1]:].tolist()


def test_the_row_penalty_ignores_padding_and_matches_transformers() -> None:
    from transformers import RepetitionPenaltyLogitsProcessor

    torch.manual_seed(0)
    scores = torch.randn(2, 50)
    row = torch.tensor([[5, 7, 7, 9]])
    hf = RepetitionPenaltyLogitsProcessor(1.3)(row, scores[:1].clone())
    padded = torch.tensor([[5, 7, 7, 9], [0, 0, 3, 4]])  # row 1: two pads of id 0
    ours = RowRepetitionPenalty(1.3, [0, 2])(padded, scores.clone())
    assert torch.equal(ours[0], hf[0])
    expected = RepetitionPenaltyLogitsProcessor(1.3)(torch.tensor([[3, 4]]), scores[1:].clone())
    assert torch.equal(ours[1], expected[0])
    assert ours[1, 0] == scores[1, 0]  # the pad id is not penalised


def test_streams_come_from_the_batch_each_with_its_own_pieces(home: Path) -> None:
    llm = create_llm({"backend": "local", "max_tokens": 20})
    expected = {q: llm.generate(_chat(q)) for q in QUESTIONS[:4]}
    start = threading.Barrier(4)
    # A long job ahead of them: the four streams queue up behind it and share a batch.
    busy = llm.batcher().submit(  # type: ignore[attr-defined]
        Job(chat_ids(llm.batcher().tokenizer, _chat(QUESTIONS[5])), 60,  # type: ignore[attr-defined]
            Sampling()))

    def stream(q: str) -> list[Any]:
        start.wait()
        return list(llm.stream(_chat(q)))

    with ThreadPoolExecutor(4) as pool:
        streamed = dict(zip(QUESTIONS[:4], pool.map(stream, QUESTIONS[:4]), strict=True))
    busy.result()
    for q, items in streamed.items():
        *pieces, last = items
        assert isinstance(last, Generation) and all(isinstance(p, str) for p in pieces)
        assert "".join(pieces) == last.text == expected[q].text
        assert last.completion_tokens == expected[q].completion_tokens
    assert max(llm.batcher().sizes[-4:]) > 1  # type: ignore[attr-defined]


def test_a_lone_caller_never_waits_for_company(batcher: Batcher) -> None:
    for job in _jobs(batcher, 1.0, limit=4)[:3]:
        batcher.submit(job).result()
    assert batcher.sizes == [1, 1, 1] and batcher.waits == [0.0, 0.0, 0.0]


def test_a_caller_who_leaves_frees_its_row(batcher: Batcher) -> None:
    pieces: list[str] = []
    job = Job(chat_ids(batcher.tokenizer, _chat(QUESTIONS[3])), 80, Sampling())

    def sink(piece: str) -> None:
        pieces.append(piece)
        if len(pieces) == 3:
            job.cancelled = True

    job.sink = sink
    result = batcher.submit(job).result()
    assert len(pieces) == 3 and result.completion_tokens < 10


def test_seeded_sampling_repeats_runs_alone_and_leaves_the_rng_alone(home: Path) -> None:
    llm = create_llm({"backend": "local", "max_tokens": 8})
    poem = _chat("Write a haiku about the sea.")
    llm.generate(poem)  # loaded first: building a model draws on the random state
    rng = torch.get_rng_state()
    first = llm.generate(poem, temperature=0.9, seed=3)
    assert first.finish_reason == "length" and first.completion_tokens == 8
    with ThreadPoolExecutor(3) as pool:
        again = list(pool.map(lambda _: llm.generate(poem, temperature=0.9, seed=3), range(3)))
    assert {g.text for g in again} == {first.text}
    *pieces, last = list(llm.stream(poem, temperature=0.9, seed=3))
    assert "".join(pieces) == last.text == first.text  # type: ignore[union-attr]
    assert torch.equal(torch.get_rng_state(), rng)  # the caller's random state is untouched
    assert generate_chat(poem, max_new_tokens=8, temperature=0.9, seed=3) == first.text
    with pytest.raises(ValueError, match="temperature"):
        generate_chat(poem, temperature=-1)


def test_top_p_and_the_openai_penalties_act_on_the_local_model(home: Path) -> None:
    llm = create_llm({"backend": "local", "max_tokens": 24})
    ask = _chat("Count from 1 to 20, separated by commas.")
    greedy = llm.generate(ask)
    # nucleus of one token: sampling at any temperature is the greedy answer
    assert llm.generate(ask, temperature=1.5, seed=5, top_p=1e-9).text == greedy.text
    assert llm.generate(ask, temperature=1.5, seed=5).text != greedy.text
    # tokens already in the answer are pushed down: the greedy answer's line after line
    # of "n. n" cannot go on
    assert greedy.text.count("\n") >= 4
    penalized = llm.generate(ask, presence_penalty=2.0, frequency_penalty=2.0)
    assert penalized.text.count("\n") < greedy.text.count("\n")
    with pytest.raises(Exception, match=r"top_p must be a number within \[0, 1\]"):
        llm.generate(ask, top_p=1.5)
    with pytest.raises(Exception, match="does not honour logit_bias"):
        llm.generate(ask, logit_bias=1.0)  # type: ignore[arg-type]


def test_answer_penalties_are_openais_formula() -> None:
    from llmops.llm.penalties import AnswerPenalties

    scores = torch.zeros(2, 5)
    ids = torch.tensor([[9, 9, 1, 1, 2], [9, 9, 3, 3, 3]])  # prompt width 2, then the answer
    out = AnswerPenalties(0.5, 0.25, 2)(ids, scores)
    assert out[0].tolist() == [0.0, -1.0, -0.75, 0.0, 0.0]  # twice: 0.5 + 2 * 0.25
    assert out[1].tolist() == [0.0, 0.0, 0.0, -1.25, 0.0]
