"""The `fake` backend: deterministic answers without a model, for tests about something else.

The answer names a digest of every message it was given (so a change anywhere
in the conversation changes it) and repeats the last user message's last
words; a word is a token. Like a sampler, it answers the same for any seed at
temperature 0, and differently per seed above it (the same seed, the same answer).
`FakeLLM.last_messages` holds what the latest call received, so a test can check
exactly what reached the model.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Iterator, Sequence
from concurrent.futures import Executor

from llmops.llm import stops
from llmops.llm.base import LLM, Generation, LLMOptions, Messages, Piece, register_backend


class FakeOptions(LLMOptions):
    """The fake backend takes only the common options."""


@register_backend("fake")
class FakeLLM(LLM):
    """The same messages give the same answer; microseconds a call, no thread needed."""

    Options = FakeOptions
    honours = frozenset({"stop"})

    def __init__(self, options: LLMOptions) -> None:
        super().__init__(options)
        self.last_messages: Messages | None = None

    def generate(self, messages: Messages, *, max_tokens: int | None = None,
                 temperature: float | None = None, seed: int | None = None,
                 stop: Sequence[str] = ()) -> Generation:
        self.last_messages = [dict(m) for m in messages]
        last = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        sampled = seed if temperature else None
        digest = hashlib.sha256(json.dumps([messages, sampled] if sampled is not None
                                           else messages).encode()).hexdigest()[:8]
        words = f"fake answer {digest}: {' '.join(last.split()[-12:])}".split()
        limit = max_tokens or self.options.max_tokens
        finish = "length" if len(words) > limit else "stop"
        words = words[:limit]
        prompt_tokens = sum(len(m["content"].split()) for m in messages)
        text, hit = stops.cut(" ".join(words), stop)
        if hit:
            finish, words = "stop", text.split()
        return Generation(text, self.model_id, prompt_tokens, len(words), finish)

    def stream(self, messages: Messages, *, max_tokens: int | None = None,
               temperature: float | None = None, seed: int | None = None,
               stop: Sequence[str] = ()) -> Iterator[Piece]:
        gen = self.generate(messages, max_tokens=max_tokens, temperature=temperature, seed=seed,
                            stop=stop)
        for i, word in enumerate(gen.text.split(" ")):
            yield word if i == 0 else " " + word
        yield gen

    async def agenerate(self, messages: Messages, *, max_tokens: int | None = None,
                        temperature: float | None = None, seed: int | None = None,
                        stop: Sequence[str] = (),
                        executor: Executor | None = None) -> Generation:
        return self.generate(messages, max_tokens=max_tokens, temperature=temperature, seed=seed,
                             stop=stop)

    async def astream(self, messages: Messages, *, max_tokens: int | None = None,
                      temperature: float | None = None, seed: int | None = None,
                      stop: Sequence[str] = (),
                      executor: Executor | None = None) -> AsyncIterator[Piece]:
        for piece in self.stream(messages, max_tokens=max_tokens, temperature=temperature,
                                 seed=seed, stop=stop):
            yield piece
