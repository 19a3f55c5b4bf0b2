"""Chain kinds: a registry of builders of the "prepare" step (input -> messages for the LLM).

`@register_kind("rag")` names a function that takes the Chain and returns a
runnable from the normalized input (`{"question", "history"}`) to `Prepared`.
The LLM call is the same for every kind, so streaming and batch share one path.

Built in: `chat` (render the prompt; no I/O) and `rag` (retrieve from the
index, render the prompt with the chunks as context).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from langchain_core.runnables import Runnable, RunnableLambda

from llmops.chains.config import ChainConfig
from llmops.errors import ChainError
from llmops.prompts.api import Prompt
from llmops.prompts.render import delimit

Messages = list[dict[str, str]]


@dataclass
class Prepared:
    """What goes to the LLM, and what it was made from."""

    messages: Messages
    sources: list[dict[str, Any]] = field(default_factory=list)
    collection: str | None = None  # the index read, if any
    index_version: int | None = None  # the index version that served the retrieval
    started: float = field(default_factory=time.perf_counter)
    contexts: list[str] = field(default_factory=list)  # the context blocks the LLM saw


class Chain(Protocol):
    """What a kind's builder may use of the chain (`runtime.Chain` is one)."""

    config: ChainConfig
    prompt: Prompt

    @property
    def collection(self) -> str | None: ...

    def retrieve(self, question: str, k: int) -> list[Any]: ...

    def span(self, name: str, span_type: str) -> AbstractContextManager[None]: ...


KindBuilder = Callable[[Chain], Runnable[dict[str, Any], Prepared]]
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


def kind_builder(name: str) -> tuple[KindBuilder, bool]:
    """The builder of a kind and whether its prepare step may block."""
    if name not in _KINDS:
        raise ChainError(f"unknown chain kind {name!r}; registered: {', '.join(kinds())}")
    return _KINDS[name], name not in _NON_BLOCKING


def require_untrusted(cfg: ChainConfig, prompt: Prompt) -> None:
    """The variables a chain fills with user or retrieved text must be declared untrusted
    in its prompt (inserted only as delimited data, in user turns)."""
    needed = [cfg.question_variable] + ([cfg.context_variable] if cfg.kind == "rag" else [])
    trusted = [v for v in needed
               if v in prompt.spec.variables and not prompt.spec.variables[v].untrusted]
    if trusted:
        raise ChainError(
            f"chain {cfg.name}: prompt {prompt.ref} must declare {', '.join(trusted)} "
            "`untrusted: true` (the chain fills it with the user's or the index's text)")


def normalize_input(inputs: Any) -> dict[str, Any]:
    """A question string, OpenAI-style messages, or {"messages": ...} / {"question": ...}.

    The result is `{"question": <last user turn>, "history": <earlier user and assistant
    turns>}`: client system messages are dropped here, so user input never enters the
    instruction part of a prompt. The tool calls and tool results after the last user
    turn, if any, are kept as `tool_turns`, which follow the rendered prompt as they are
    (a chain whose tools pass through; earlier rounds of tool calls are left out).
    """
    if isinstance(inputs, str):
        return {"question": inputs, "history": []}
    if isinstance(inputs, list):
        inputs = {"messages": inputs}
    if not isinstance(inputs, dict):
        raise ChainError(f"chain input must be a question, messages or a dict, not {type(inputs)}")
    if "messages" in inputs and inputs["messages"] is not None:
        msgs = [dict(m) for m in inputs["messages"]]
        for i, m in enumerate(msgs):
            if not (_text_turn(m) or _tool_turn(m)):
                raise ChainError(f"messages[{i}]: needs role system|user|assistant and text "
                                 "content (or a tool call, or a tool's result)")
        last = max((i for i, m in enumerate(msgs) if m["role"] == "user"), default=None)
        trail = msgs[last + 1:] if last is not None else msgs
        if last is None or any(not _tool_turn(m) for m in trail):
            raise ChainError("messages: the last message must be from the user (or the tool "
                             "calls and results that follow it)")
        turns = [{"role": m["role"], "content": m["content"]} for m in msgs[:last]
                 if m["role"] in ("user", "assistant") and _text_turn(m)
                 and not m.get("tool_calls")]
        out = {"question": msgs[last]["content"], "history": turns}
        return {**out, "tool_turns": trail} if trail else out
    if isinstance(inputs.get("question"), str):
        out = {"question": inputs["question"], "history": list(inputs.get("history") or [])}
        return {**out, "tool_turns": inputs["tool_turns"]} if inputs.get("tool_turns") else out
    raise ChainError("chain input needs 'messages' or 'question'")


def _text_turn(m: dict[str, Any]) -> bool:
    return m.get("role") in ("system", "user", "assistant") and isinstance(m.get("content"), str)


def _tool_turn(m: dict[str, Any]) -> bool:
    """An assistant turn that calls tools, or a tool's result (OpenAI's shapes)."""
    if m.get("role") == "assistant":
        return bool(m.get("tool_calls")) and isinstance(m.get("content"), str | None)
    return (m.get("role") == "tool" and isinstance(m.get("tool_call_id"), str)
            and isinstance(m.get("content"), str))


def _with_history(rendered: Messages, history: Messages) -> Messages:
    """Insert earlier turns between the prompt's instructions and the final user turn.

    Every earlier turn is the client's word, an assistant turn included (a client can
    forge one): each goes in as untrusted data, in its role.
    """
    turns = [{"role": m["role"], "content": delimit(f"earlier {m['role']} turn", m["content"])}
             for m in history]
    return [*rendered[:-1], *turns, rendered[-1]]


@register_kind("chat", blocking=False)
def _chat(chain: Chain) -> Runnable[dict[str, Any], Prepared]:
    def prepare(inp: dict[str, Any]) -> Prepared:
        with chain.span("prompt", "CHAIN"):
            values = {chain.config.question_variable: inp["question"]}
            return Prepared(_with_history(chain.prompt.render(**values), inp["history"])
                            + inp.get("tool_turns", []))

    return RunnableLambda(prepare, name="chat.prepare")


@register_kind("rag")
def _rag(chain: Chain) -> Runnable[dict[str, Any], Prepared]:
    cfg = chain.config
    retrieval = cfg.retrieval
    if retrieval is None:
        raise ChainError(f"chain {cfg.name}: kind rag needs a retrieval section")

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
            versions = {h.index_version for h in inp["hits"]}
            messages = (_with_history(chain.prompt.render(**values), inp["history"])
                        + inp.get("tool_turns", []))
            return Prepared(messages, [_source(h) for h in used], chain.collection,
                            max(versions) if versions else None, contexts=parts)

    return RunnableLambda(retrieve, name="rag.retrieve") | RunnableLambda(render, name="rag.prompt")


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
