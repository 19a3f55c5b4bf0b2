"""A chain at run time: retrieve, render the pinned prompt, call the LLM, keep the lineage.

Chain kinds are a registry: `@register_kind("rag")` names a function that
builds the "prepare" runnable (input -> messages and sources). The LLM call is
the same for every kind, so streaming and batch share one path:
`Chain.prepare` + `Chain.finish` (or `Chain.invoke`, which does both).

Every entry point has an async twin for event loops (`aprepare`, `afinish`,
`ainvoke`, `astream`): the LLM call is awaited (the openai backend does not
hold a thread while it waits), and a kind's prepare step runs on a thread
unless the kind is registered as non-blocking (`chat`: it only renders).

Client-supplied system messages are dropped: user input never enters the
instruction part of a prompt.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from langchain_core.runnables import Runnable, RunnableLambda, RunnableSequence

from llmops.chains.config import ChainConfig
from llmops.chains.llm import LLM, Generation
from llmops.errors import ChainError
from llmops.prompts.api import Prompt

Messages = list[dict[str, str]]


@dataclass
class Prepared:
    """What goes to the LLM, and what it was made from."""

    messages: Messages
    sources: list[dict[str, Any]] = field(default_factory=list)
    index: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)
    contexts: list[str] = field(default_factory=list)  # the context blocks the LLM saw


@dataclass(frozen=True)
class ChainResult:
    """An answer, its sources and its lineage."""

    answer: str
    sources: list[dict[str, Any]]
    lineage: dict[str, Any]
    # The context blocks the LLM saw, whole (sources carry only snippets); for evaluation.
    contexts: list[str] = field(default_factory=list)

    def to_dict(self, *, contexts: bool = False) -> dict[str, Any]:
        out = {"answer": self.answer, "sources": self.sources, "lineage": self.lineage}
        if contexts:
            out["contexts"] = self.contexts
        return out


def normalize_input(inputs: Any) -> dict[str, Any]:
    """A question string, OpenAI-style messages, or {"messages": ...} / {"question": ...}."""
    if isinstance(inputs, str):
        return {"question": inputs, "history": []}
    if isinstance(inputs, list):
        inputs = {"messages": inputs}
    if not isinstance(inputs, dict):
        raise ChainError(f"chain input must be a question, messages or a dict, not {type(inputs)}")
    if "messages" in inputs and inputs["messages"] is not None:
        msgs = [dict(m) for m in inputs["messages"]]
        for i, m in enumerate(msgs):
            if m.get("role") not in ("system", "user", "assistant") or not isinstance(
                m.get("content"), str
            ):
                raise ChainError(f"messages[{i}]: needs role system|user|assistant and text content")
        turns = [m for m in msgs if m["role"] in ("user", "assistant")]
        if not turns or turns[-1]["role"] != "user":
            raise ChainError("messages: the last message must be from the user")
        return {"question": turns[-1]["content"], "history": turns[:-1]}
    if isinstance(inputs.get("question"), str):
        return {"question": inputs["question"], "history": list(inputs.get("history") or [])}
    raise ChainError("chain input needs 'messages' or 'question'")


KindBuilder = Callable[["Chain"], Runnable[dict[str, Any], Prepared]]
_KINDS: dict[str, KindBuilder] = {}
_NON_BLOCKING: set[str] = set()


def register_kind(name: str, *, blocking: bool = True) -> Callable[[KindBuilder], KindBuilder]:
    """Function decorator: a chain kind that builds the prepare runnable of a Chain.

    Args:
        name: the `kind` that chain configs name.
        blocking: whether prepare may block (retrieval, I/O, heavy CPU); async
            callers then run it on a thread. A kind that only renders says False.
    """

    def deco(fn: KindBuilder) -> KindBuilder:
        if name in _KINDS and _KINDS[name] is not fn:
            raise ValueError(f"chain kind {name!r} is already registered")
        _KINDS[name] = fn
        if blocking:
            _NON_BLOCKING.discard(name)
        else:
            _NON_BLOCKING.add(name)
        return fn

    return deco


def kinds() -> list[str]:
    return sorted(_KINDS)


def _with_history(rendered: Messages, history: Messages) -> Messages:
    """Insert earlier turns between the prompt's instructions and the final user turn."""
    head = [m for m in rendered[:-1]]
    return [*head, *history, rendered[-1]]


@register_kind("chat", blocking=False)
def _chat(chain: Chain) -> Runnable[dict[str, Any], Prepared]:
    def prepare(inp: dict[str, Any]) -> Prepared:
        with chain.span("prompt", "CHAIN"):
            values = {chain.config.question_variable: inp["question"]}
            return Prepared(_with_history(chain.prompt.render(**values), inp["history"]))

    return RunnableLambda(prepare, name="chat.prepare")


@register_kind("rag")
def _rag(chain: Chain) -> Runnable[dict[str, Any], Prepared]:
    cfg = chain.config
    retrieval = cfg.retrieval
    assert retrieval is not None

    def retrieve(inp: dict[str, Any]) -> dict[str, Any]:
        with chain.span("retrieve", "RETRIEVER"):
            hits = chain.retrieve(inp["question"], retrieval.k)
        return {**inp, "hits": hits}

    def render(inp: dict[str, Any]) -> Prepared:
        with chain.span("prompt", "CHAIN"):
            parts: list[str] = []
            used: list[Any] = []
            budget = retrieval.max_context_chars
            for hit in inp["hits"]:
                title = hit.metadata.get("title") or hit.metadata.get("doc_id") or hit.id
                block = f"[{title}]\n{hit.text}"
                if used and budget - len(block) < 0:
                    break
                parts.append(block[:budget])
                budget -= len(block)
                used.append(hit)
            values = {cfg.question_variable: inp["question"],
                      cfg.context_variable: "\n\n".join(parts)}
            sources = [_source(h) for h in used]
            versions = {h.index_version for h in inp["hits"]}
            index = {"collection": chain.collection,
                     "index_version": max(versions) if versions else None}
            messages = _with_history(chain.prompt.render(**values), inp["history"])
            return Prepared(messages, sources, index, contexts=parts)

    return RunnableLambda(retrieve, name="rag.retrieve") | RunnableLambda(render, name="rag.prompt")


def _plain(runnable: Runnable[Any, Any]) -> Callable[[Any], Any] | None:
    """The runnable as a plain function when it is one-argument lambdas in a row, else None.

    LangChain's invoke costs tens of microseconds a step (config, callbacks) that a
    chain without tracing does not use.
    """
    if isinstance(runnable, RunnableLambda):
        fn = getattr(runnable, "func", None)
        if fn is None or inspect.iscoroutinefunction(fn):
            return None
        try:
            params = list(inspect.signature(fn).parameters.values())
        except (TypeError, ValueError):
            return None
        return fn if len(params) == 1 and params[0].kind in (
            params[0].POSITIONAL_ONLY, params[0].POSITIONAL_OR_KEYWORD) else None
    if isinstance(runnable, RunnableSequence):
        steps = [_plain(step) for step in runnable.steps]
        if not all(steps):
            return None
        fns: list[Callable[[Any], Any]] = [f for f in steps if f is not None]

        def run(value: Any) -> Any:
            for f in fns:
                value = f(value)
            return value

        return run
    return None


def _source(hit: Any) -> dict[str, Any]:
    md = dict(hit.metadata or {})
    return {
        "id": hit.id,
        "score": round(float(hit.score), 4),
        "title": md.get("title"),
        "doc_id": md.get("doc_id"),
        "url": md.get("url") or md.get("path"),
        "snippet": hit.text[:200],
    }


def _start_tracing() -> None:
    """Send MLflow traces to the experiment `<prefix>/traces` of the settings in force."""
    import mlflow

    from llmops.config import get_settings
    from llmops.registry import get_registry

    settings = get_settings()
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_experiment(experiment_id=get_registry().experiment_id("traces"))


class Chain:
    """A runnable chain with its pinned prompt, its LLM and its lineage."""

    def __init__(
        self,
        config: ChainConfig,
        prompt: Prompt,
        llm: LLM,
        *,
        version: int | None = None,
        content_hash: str | None = None,
        retriever: Callable[[str, int], list[Any]] | None = None,
        tracing: bool = False,
    ) -> None:
        if config.kind not in _KINDS:
            raise ChainError(f"unknown chain kind {config.kind!r}; registered: {', '.join(kinds())}")
        if config.kind == "rag" and config.retrieval is None:
            raise ChainError(f"chain {config.name}: kind rag needs a retrieval section")
        self.config, self.prompt, self.llm = config, prompt, llm
        self.version, self.content_hash, self.tracing = version, content_hash, tracing
        self._retriever = retriever
        self.collection: str | None = None
        if tracing:
            _start_tracing()
        self.prepare_runnable = _KINDS[config.kind](self)
        self._prepare_fn = _plain(self.prepare_runnable)
        self.blocking = config.kind not in _NON_BLOCKING
        self.runnable: Runnable[Any, ChainResult] = (
            RunnableLambda(normalize_input, name="input")
            | self.prepare_runnable
            | RunnableLambda(self.finish, name="llm")
        )

    @property
    def name(self) -> str:
        return self.config.registered_name

    def retrieve(self, question: str, k: int) -> list[Any]:
        if self._retriever is not None:
            return self._retriever(question, k)
        from llmops.config import get_settings
        from llmops.index import query
        from llmops.index.config import load_index_config

        if self.collection is None:
            self.collection = load_index_config(get_settings().project_dir).collection
        return query(question, k=k)

    @contextlib.contextmanager
    def span(self, name: str, span_type: str) -> Iterator[None]:
        """An MLflow trace span when tracing is on; nothing otherwise."""
        if not self.tracing:
            yield
            return
        import mlflow

        with mlflow.start_span(name=f"{self.config.name}.{name}", span_type=span_type):
            yield

    def prepare(self, inputs: Any) -> Prepared:
        """Input -> the messages for the LLM, with sources (no LLM call)."""
        inp = normalize_input(inputs)
        if self._prepare_fn is not None and not self.tracing:
            prepared: Prepared = self._prepare_fn(inp)
        else:
            prepared = self.prepare_runnable.invoke(inp)
        return prepared

    def finish(self, prepared: Prepared, generation: Generation | None = None,
               **llm_kwargs: Any) -> ChainResult:
        """Call the LLM (unless a streamed generation is handed in) and add the lineage."""
        if generation is None:
            with self.span("llm", "LLM"):
                generation = self.llm.generate(prepared.messages, **llm_kwargs)
        return ChainResult(generation.text, prepared.sources, self.lineage(prepared, generation),
                           prepared.contexts)

    def lineage(self, prepared: Prepared, generation: Generation) -> dict[str, Any]:
        spec = self.config.llm
        return {
            "chain": self.name,
            "chain_version": self.version,
            "chain_hash": self.content_hash,
            "prompt": self.prompt.spec.registered_name,
            "prompt_version": self.prompt.version,
            "index_collection": prepared.index.get("collection"),
            "index_version": prepared.index.get("index_version"),
            "chunk_ids": [s["id"] for s in prepared.sources],
            "llm_backend": spec.backend,
            "base_model": self.llm.model_id if spec.backend != "local" else getattr(
                self.llm, "ref", self.llm.model_id),
            "adapter": spec.adapter,
            "latency_ms": round((time.perf_counter() - prepared.started) * 1000, 1),
            "prompt_tokens": generation.prompt_tokens,
            "completion_tokens": generation.completion_tokens,
            "finish_reason": generation.finish_reason,
        }

    def invoke(self, inputs: Any, **llm_kwargs: Any) -> ChainResult:
        """Answer one input: a question, OpenAI-style messages, or a dict."""
        if llm_kwargs or not self.tracing:
            return self.finish(self.prepare(inputs), **llm_kwargs)
        import mlflow

        with mlflow.start_span(name=self.config.name, span_type="CHAIN"):
            result: ChainResult = self.runnable.invoke(inputs)
        return result

    def stream(self, inputs: Any, **llm_kwargs: Any) -> Iterator[str | ChainResult]:
        """Text pieces as the LLM makes them, then the ChainResult as the last item."""
        prepared = self.prepare(inputs)
        pieces: list[str] = []
        for piece in self.llm.stream(prepared.messages, **llm_kwargs):
            pieces.append(piece)
            yield piece
        yield self._streamed(prepared, pieces)

    def _streamed(self, prepared: Prepared, pieces: list[str]) -> ChainResult:
        text = "".join(pieces)
        return self.finish(prepared, Generation(text, self.llm.model_id, 0, len(text.split())))

    # -- async -------------------------------------------------------------------------
    async def aprepare(self, inputs: Any, *, executor: Executor | None = None) -> Prepared:
        """`prepare` for an event loop: on `executor` (a thread) when the kind may block."""
        if not self.blocking:
            return self.prepare(inputs)
        ctx = contextvars.copy_context()  # tracing spans follow the call onto the thread
        prepared: Prepared = await asyncio.get_running_loop().run_in_executor(
            executor, ctx.run, self.prepare, inputs)
        return prepared

    async def afinish(self, prepared: Prepared, generation: Generation | None = None, *,
                      executor: Executor | None = None, **llm_kwargs: Any) -> ChainResult:
        """`finish` for an event loop: the LLM call is awaited."""
        if generation is None:
            with self.span("llm", "LLM"):
                generation = await self.llm.agenerate(prepared.messages, executor=executor,
                                                      **llm_kwargs)
        return ChainResult(generation.text, prepared.sources, self.lineage(prepared, generation),
                           prepared.contexts)

    async def ainvoke(self, inputs: Any, *, executor: Executor | None = None,
                      **llm_kwargs: Any) -> ChainResult:
        """`invoke` for an event loop; `executor` runs what blocks (default: the loop's).

        Example:
            >>> result = await chain.ainvoke("What does the with statement do?", max_tokens=64)
        """
        if not self.tracing:
            prepared = await self.aprepare(inputs, executor=executor)
            return await self.afinish(prepared, executor=executor, **llm_kwargs)
        import mlflow

        with mlflow.start_span(name=self.config.name, span_type="CHAIN"):
            prepared = await self.aprepare(inputs, executor=executor)
            return await self.afinish(prepared, executor=executor, **llm_kwargs)

    async def astream(self, inputs: Any, *, executor: Executor | None = None,
                      **llm_kwargs: Any) -> AsyncIterator[str | ChainResult]:
        """`stream` for an event loop: text pieces, then the ChainResult as the last item."""
        prepared = await self.aprepare(inputs, executor=executor)
        pieces: list[str] = []
        async for piece in self.llm.astream(prepared.messages, executor=executor, **llm_kwargs):
            pieces.append(piece)
            yield piece
        yield self._streamed(prepared, pieces)
