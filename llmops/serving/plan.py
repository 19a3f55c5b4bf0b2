"""Planning one chat request: its endpoint, limits, variant and chain version; no work yet.

The client's messages are checked and normalized once here (`normalize_input`);
the chain takes the normalized input as it is, and the log keeps the client's
messages as sent.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from llmops.chains.kinds import normalize_input
from llmops.errors import (
    BadRequestError,
    ChainError,
    ModelNotFoundError,
    OverCapError,
    UnsupportedParameterError,
)
from llmops.serving.gateway import Gateway
from llmops.serving.router import Live, assign
from llmops.serving.schemas import ChatCompletionRequest, ChatMessage
from llmops.serving.spec import EndpointSpec
from llmops.store import KeyRecord


def new_request_id() -> str:
    """96 random bits: unique across replicas, and no id tells the next one."""
    return f"chatcmpl-{secrets.token_hex(12)}"


@dataclass
class Plan:
    """What a request will run: endpoint, variant, chain version, input, parameters."""

    request_id: str
    endpoint_name: str
    endpoint: EndpointSpec
    variant: str
    live: Live | None
    messages: list[dict[str, str]]  # as the client sent them (for the log)
    inputs: dict[str, Any]  # normalized: the question and the earlier turns (for the chain)
    llm_kwargs: dict[str, Any]
    key_id: str
    user: str | None  # the sticky key: the body's `user`, else the endpoint's header
    stream: bool
    started: float = field(default_factory=time.perf_counter)
    fallback_from: str | None = None
    first_error: str | None = None

    @property
    def deadline(self) -> float:
        return self.started + self.endpoint.limits.timeout_s

    def switch_to(self, variant: str, live: Live, error: Exception) -> None:
        """Move to the fallback variant after `error`; the first failure is kept for the log."""
        self.fallback_from, self.first_error = self.variant, f"{type(error).__name__}: {error}"[
            :2000]
        self.variant, self.live = variant, live

    def chain_kwargs(self) -> dict[str, Any]:
        """The LLM arguments: the client's, with `max_tokens` never above the endpoint's cap."""
        kwargs = dict(self.llm_kwargs)
        if kwargs.get("max_tokens") is None:
            cap = self.endpoint.limits.max_tokens
            default = getattr(self.live.chain, "max_tokens", None) if self.live else None
            kwargs["max_tokens"] = min(default or cap, cap)
        return kwargs


def plan(gw: Gateway, req: ChatCompletionRequest, key: KeyRecord,
         headers: dict[str, str]) -> Plan:
    """Check the request against its endpoint and choose the variant; no work done yet."""
    endpoint = gw.routes.endpoints.get(req.model)
    if endpoint is None:
        known = ", ".join(sorted(gw.routes.endpoints))
        raise ModelNotFoundError(f"the model {req.model!r} does not exist; endpoints: {known}",
                                 param="model")
    unhonoured = req.unhonoured()
    if unhonoured:
        name = unhonoured[0]
        raise UnsupportedParameterError(
            f"{name} is not supported by endpoint {req.model!r}; leave it out (the gateway "
            "refuses a parameter it would not honour rather than ignore it)", param=name)
    cap = endpoint.limits.max_tokens
    asked = req.max_completion_tokens or req.max_tokens
    if asked is not None and asked > cap:
        param = "max_completion_tokens" if req.max_completion_tokens else "max_tokens"
        raise OverCapError(f"{param} {asked} is above the cap of endpoint {req.model!r}: {cap}",
                           param=param)
    rid = new_request_id()
    user = req.user or headers.get(endpoint.sticky_header)
    variant = assign(req.model, user or rid, gw.weights[req.model])
    live = live_of(gw, endpoint, variant)
    generation: dict[str, Any] = {**({"stop": req.stops} if req.stops else {}), **req.options}
    honours: frozenset[str] = getattr(live.chain, "honours", frozenset()) if live else frozenset()
    if generation and live is not None:
        for name in generation:
            if name not in honours:
                raise UnsupportedParameterError(
                    f"{name} is not supported by endpoint {req.model!r}: "
                    + _why_not(live.chain, name), param=name)
    tools = "tools" in honours
    messages = [_message(m, tools) for m in req.messages if tools or m.role != "tool"]
    try:
        inputs = normalize_input(messages)
    except ChainError as exc:
        raise BadRequestError(str(exc), param="messages") from None
    kwargs: dict[str, Any] = {"max_tokens": asked}
    if req.temperature is not None:
        kwargs["temperature"] = req.temperature
    if req.seed is not None:
        kwargs["seed"] = req.seed
    kwargs.update(generation)
    return Plan(rid, req.model, endpoint, variant, live, messages, inputs, kwargs, key.id,
                user, bool(req.stream))


def _why_not(chain: Any, name: str) -> str:
    llm = getattr(chain, "llm", None)
    kind = getattr(llm, "kind", "") or "LLM"
    if name in getattr(llm, "honours", ()):  # the backend could: the chain does not pass it
        return f"its chain does not pass {name} through (a chain with `tools: passthrough`)"
    return f"its chain's {kind} backend does not honour it"


def _message(m: ChatMessage, tools: bool) -> dict[str, Any]:
    """A client message for the chain: text content; with tools, the tool calls of an
    assistant turn and the call a tool's result answers."""
    out: dict[str, Any] = {"role": "system" if m.role == "developer" else m.role,
                           "content": m.text()}
    extra = m.model_extra or {}
    if tools and m.role == "assistant" and extra.get("tool_calls"):
        out["tool_calls"] = extra["tool_calls"]
    if tools and m.role == "tool":
        out["tool_call_id"] = extra.get("tool_call_id")
    return out


def live_of(gw: Gateway, endpoint: EndpointSpec, variant: str) -> Live | None:
    """The variant's chain as loaded now (no registry call: the alias cache)."""
    return gw.cache.get(endpoint.variant(variant).ref)
