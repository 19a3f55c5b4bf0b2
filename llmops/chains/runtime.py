"""A chain at run time: prepare (retrieve, render the pinned prompt), generate, keep the lineage.

One answer contract for every entry point: `invoke` returns a `ChainResult`;
`stream` yields text pieces and then one `ChainResult`, whose lineage carries
the backend's real token usage, streamed or not. Every entry point has an
async twin for event loops (`ainvoke`, `astream`): the LLM call is awaited
(neither the openai nor the local backend holds a thread while it waits), and
a kind's prepare step runs on a thread unless the kind never blocks (`chat`).
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

from llmops.chains.config import ChainConfig, IndexRef
from llmops.chains.kinds import Prepared, kind_builder, normalize_input, require_untrusted
from llmops.errors import ChainError
from llmops.lineage import Lineage
from llmops.llm import LLM, Generation
from llmops.prompts.api import Prompt

TOOL_OPTIONS = frozenset({"tools", "tool_choice", "parallel_tool_calls"})


@dataclass(frozen=True)
class ChainResult:
    """An answer, its sources and its lineage (token usage included)."""

    answer: str
    sources: list[dict[str, Any]]
    lineage: Lineage
    # The context blocks the LLM saw, whole (sources carry only snippets); for evaluation.
    contexts: list[str] = field(default_factory=list)
    # The backend's answer as it gave it: logprobs, tool calls and the other answers of n > 1.
    generation: Generation | None = field(default=None, repr=False, compare=False)

    @property
    def usage(self) -> tuple[int, int]:
        return self.lineage.usage

    @property
    def finish_reason(self) -> str:
        return self.lineage.finish

    def to_dict(self, *, contexts: bool = False) -> dict[str, Any]:
        out = {"answer": self.answer, "sources": self.sources, "lineage": self.lineage.to_dict()}
        if contexts:
            out["contexts"] = self.contexts
        return out


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
        builder, self.blocking = kind_builder(config.kind)
        require_untrusted(config, prompt)  # also for a version logged before the rule
        self.config, self.prompt, self.llm = config, prompt, llm
        self.version, self.content_hash, self.tracing = version, content_hash, tracing
        self._retriever = retriever
        self._index: tuple[Any, Any] | None = None  # (settings, index config) of retrieval
        if tracing:
            _start_tracing()
        self.prepare_runnable = builder(self)
        self._prepare_fn = _plain(self.prepare_runnable)
        self.runnable: Runnable[Any, ChainResult] = (
            RunnableLambda(normalize_input, name="input")
            | self.prepare_runnable
            | RunnableLambda(self.finish, name="llm")
        )

    @property
    def name(self) -> str:
        return self.config.registered_name

    @property
    def honours(self) -> frozenset[str]:
        """The generation options a request may set: the backend's, its tools only when the
        chain passes them through."""
        honours = frozenset(getattr(self.llm, "honours", ()))
        if self.config.tools != "passthrough":
            honours -= TOOL_OPTIONS
        return honours

    @property
    def max_tokens(self) -> int:
        """The chain's own cap on an answer, tokens (callers may ask for fewer)."""
        return self.config.llm.max_tokens

    @property
    def collection(self) -> str | None:
        """The collection this chain retrieves from (None for kinds without retrieval)."""
        if self.config.kind != "rag":
            return None
        if self.config.index is not None:
            return self.config.index.collection
        if self._retriever is not None:
            return None
        return str(self._index_target()[1].collection)

    def index_version(self) -> int | None:
        """The current version of the index this chain reads (None: no retrieval, or never
        built)."""
        if self.config.kind != "rag" or self._retriever is not None:
            return None
        from llmops.index import current_version

        settings, config = self._index_target()
        return current_version(settings=settings, config=config)

    def retrieve(self, question: str, k: int) -> list[Any]:
        if self._retriever is not None:
            return self._retriever(question, k)
        from llmops.index import query

        settings, config = self._index_target()
        return query(question, k=k, settings=settings, config=config)

    def _index_target(self) -> tuple[Any, Any]:
        """The settings and index config that retrieval reads: the logged index, else the
        project's (a chain loaded from its file, unlogged)."""
        if self._index is None:
            from llmops.config import get_settings
            from llmops.index.config import IndexConfig, load_index_config

            settings = get_settings()
            ref = self.config.index
            if ref is None:
                self._index = (settings, load_index_config(settings.project_dir))
            else:
                self._index = (index_settings(settings, ref), IndexConfig(collection=ref.collection))
        return self._index

    @contextlib.contextmanager
    def span(self, name: str, span_type: str) -> Iterator[None]:
        """An MLflow trace span when tracing is on; nothing otherwise."""
        if not self.tracing:
            yield
            return
        import mlflow

        with mlflow.start_span(name=f"{self.config.name}.{name}", span_type=span_type):
            yield

    # -- the steps -------------------------------------------------------------------
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
        """Call the LLM (unless its generation is handed in) and add the lineage."""
        if generation is None:
            with self.span("llm", "LLM"):
                generation = self.llm.generate(prepared.messages, **llm_kwargs)
        return ChainResult(generation.text, prepared.sources, self.lineage(prepared, generation),
                           prepared.contexts, generation)

    def lineage(self, prepared: Prepared, generation: Generation) -> Lineage:
        spec = self.config.llm
        adapter, adapter_version = _adapter(getattr(spec, "adapter", None))
        return Lineage(
            chain=self.name, chain_version=self.version, chain_hash=self.content_hash,
            prompt=self.prompt.spec.registered_name, prompt_version=self.prompt.version,
            index_collection=prepared.collection, index_version=prepared.index_version,
            chunk_ids=tuple(s["id"] for s in prepared.sources), backend=spec.backend,
            base_model=getattr(self.llm, "ref", None) or self.llm.model_id,
            adapter=adapter, adapter_version=adapter_version,
            prompt_tokens=generation.prompt_tokens, completion_tokens=generation.completion_tokens,
            latency_ms=round((time.perf_counter() - prepared.started) * 1000, 1),
            finish_reason=generation.finish_reason,
        )

    # -- sync --------------------------------------------------------------------------
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
        for piece in self.llm.stream(prepared.messages, **llm_kwargs):
            if isinstance(piece, Generation):
                yield self.finish(prepared, piece)
                return
            yield piece
        raise ChainError(f"{self.config.llm.backend} backend: its stream ended without a result")

    # -- async -------------------------------------------------------------------------
    async def aprepare(self, inputs: Any, *, executor: Executor | None = None) -> Prepared:
        """`prepare` for an event loop: on `executor` (a thread) when the kind may block."""
        if not self.blocking:
            return self.prepare(inputs)
        ctx = contextvars.copy_context()  # tracing spans follow the call onto the thread
        prepared: Prepared = await asyncio.get_running_loop().run_in_executor(
            executor, ctx.run, self.prepare, inputs)
        return prepared

    async def ainvoke(self, inputs: Any, *, executor: Executor | None = None,
                      **llm_kwargs: Any) -> ChainResult:
        """`invoke` for an event loop; `executor` runs what blocks (default: the loop's).

        Example:
            >>> result = await chain.ainvoke("What does the with statement do?", max_tokens=64)
        """
        with self._maybe_span():
            prepared = await self.aprepare(inputs, executor=executor)
            with self.span("llm", "LLM"):
                generation = await self.llm.agenerate(prepared.messages, executor=executor,
                                                      **llm_kwargs)
            return self.finish(prepared, generation)

    async def astream(self, inputs: Any, *, executor: Executor | None = None,
                      **llm_kwargs: Any) -> AsyncIterator[str | ChainResult]:
        """`stream` for an event loop: text pieces, then the ChainResult as the last item."""
        prepared = await self.aprepare(inputs, executor=executor)
        async for piece in self.llm.astream(prepared.messages, executor=executor, **llm_kwargs):
            if isinstance(piece, Generation):
                yield self.finish(prepared, piece)
                return
            yield piece
        raise ChainError(f"{self.config.llm.backend} backend: its stream ended without a result")

    def _maybe_span(self) -> contextlib.AbstractContextManager[Any]:
        if not self.tracing:
            return contextlib.nullcontext()
        import mlflow

        return mlflow.start_span(name=self.config.name, span_type="CHAIN")


def index_settings(settings: Any, ref: IndexRef) -> Any:
    """The settings with the vector store where a logged chain's index is, unless the
    settings name their own (`vector` set by a profile or LLMOPS_VECTOR__*)."""
    if "vector" in settings.model_fields_set:
        return settings
    from pathlib import Path

    from llmops.config import VectorSettings

    if ref.mode == "server":
        vector = VectorSettings(mode="server", host=ref.host or "127.0.0.1", port=ref.port or 8000)
    else:
        path = Path(ref.path) if ref.path else Path("chroma")
        vector = VectorSettings(mode="embedded",
                                path=path if path.is_absolute() else settings.home_dir / path)
    return settings.model_copy(update={"vector": vector})


def _adapter(ref: str | None) -> tuple[str | None, int | None]:
    """(registered name, version) of a pinned adapter reference `adapter.x/3`."""
    if not ref:
        return None, None
    name, _, version = ref.partition("/")
    name = name.split("@", 1)[0]
    return (name if name.startswith("adapter.") else f"adapter.{name}"), (
        int(version) if version.isdigit() else None)


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


def _start_tracing() -> None:
    """Send MLflow traces to the experiment `<prefix>/traces` of the settings in force."""
    import mlflow

    from llmops.config import get_settings
    from llmops.registry import get_registry

    settings = get_settings()
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_experiment(experiment_id=get_registry().experiment_id("traces"))
