"""OpenAI's wire format as the `openai` backend reads it: stream events, error bodies,
log probabilities and tool calls put together from their stream deltas."""

from __future__ import annotations

import json
from typing import Any

from llmops.errors import BackendError
from llmops.llm.base import TokenLogprob

DONE = object()


def sse_event(line: str) -> dict[str, Any] | object | None:
    """One server-sent event line as its JSON object, `DONE`, or None (not an event)."""
    line = line.strip()
    if not line.startswith("data:"):
        return None
    payload = line[5:].strip()
    if payload == "[DONE]":
        return DONE
    try:
        event = json.loads(payload)
    except ValueError as exc:
        raise BackendError(f"malformed stream event: {payload[:200]!r}") from exc
    if not isinstance(event, dict):
        raise BackendError(f"malformed stream event: {payload[:200]!r}")
    if "error" in event:
        raise BackendError(f"stream failed: {error_text(payload.encode())}")
    return event


def error_text(raw: bytes) -> str:
    try:
        err = json.loads(raw).get("error", {})
        return str(err.get("message") or err)[:500]
    except (ValueError, AttributeError):
        return raw.decode("utf-8", "replace")[:500]


def logprobs_of(data: Any) -> tuple[TokenLogprob, ...] | None:
    """OpenAI's `logprobs` of a choice (or of a chunk's) as records; None when absent."""
    if not isinstance(data, dict) or data.get("content") is None:
        return None
    return tuple(TokenLogprob.from_openai(t) for t in data["content"])


class ToolCalls:
    """The tool calls of a stream, put together from their deltas (by `index`)."""

    def __init__(self) -> None:
        self.calls: dict[int, dict[str, Any]] = {}

    def feed(self, deltas: Any) -> None:
        for d in deltas or ():
            call = self.calls.setdefault(int(d.get("index", len(self.calls))), {
                "id": None, "type": "function", "function": {"name": "", "arguments": ""}})
            call["id"] = d.get("id") or call["id"]
            call["type"] = d.get("type") or call["type"]
            fn = d.get("function") or {}
            call["function"]["name"] += fn.get("name") or ""
            call["function"]["arguments"] += fn.get("arguments") or ""

    def done(self) -> tuple[dict[str, Any], ...]:
        return tuple(self.calls[i] for i in sorted(self.calls))
