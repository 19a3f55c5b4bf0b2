"""Request and response bodies, with the names OpenAI's API uses.

A chat request's parameters are either honoured or refused with a 400 that names
them (`UNHONOURED`); a client never gets an answer that silently ignored one. A
parameter sent with the value that means "off" (`stop: null`, `logprobs: false`,
`tools: []`, `top_p: 1`, ...) asks for nothing and is accepted.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator, model_validator

from llmops.llm import stops
from llmops.llm.base import MAX_N, MAX_TOP_LOGPROBS


def nul_at(value: Any, where: str = "") -> str | None:
    """The path of the first string that holds a NUL byte in a parsed JSON value, or None."""
    if isinstance(value, str):
        return (where or "body") if "\x00" in value else None
    if isinstance(value, dict):
        for k, v in value.items():
            found = nul_at(k, where) or nul_at(v, f"{where}.{k}" if where else str(k))
            if found:
                return found
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found = nul_at(v, f"{where}[{i}]")
            if found:
                return found
    return None


class RequestBody(BaseModel):
    """A request body: no string in it may hold a NUL byte (400 before any work; PostgreSQL
    would refuse the row after the model ran)."""

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        where = nul_at(data)
        if where is not None:
            raise ValueError(f"{where} holds a NUL byte")
        return data


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(p.text or "" for p in self.content if p.type == "text")
        return self.content or ""


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class ChatCompletionRequest(RequestBody):
    model_config = ConfigDict(extra="allow")

    model: str = Field(description="the endpoint name (see GET /v1/models)", max_length=256)
    messages: list[ChatMessage] = Field(min_length=1, max_length=1000)
    max_tokens: int | None = Field(None, ge=1, description="cap on the answer, tokens")
    max_completion_tokens: int | None = Field(None, ge=1, description="same as max_tokens")
    temperature: float | None = Field(None, ge=0, le=2)
    user: str | None = Field(None, max_length=256, description="sticky A/B assignment key")
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    n: int | None = Field(None, ge=1, le=MAX_N, description="answers to give (more than 1 "
                          "where the backend honours n: local)")
    seed: int | None = Field(None, description="sampling seed: the same seed, the same answer "
                             "(with temperature > 0, on the local backend)")
    stop: str | list[str] | None = Field(
        None, description="up to 4 sequences: the answer ends before the first one (not "
        "included; finish_reason stop), streamed answers too")

    top_p: float | None = Field(None, ge=0, le=1, description="nucleus sampling")
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)

    logprobs: StrictBool | None = Field(None, description="each answer token's log probability")
    top_logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS,
                                     description="and this many most likely tokens at its place")
    tools: list[dict[str, Any]] | None = Field(
        None, description="functions the model may call (an endpoint whose chain passes tools "
        "through)")
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None

    response_format: dict[str, Any] | None = Field(
        None, description="JSON mode: {type: json_object} or {type: json_schema, json_schema: "
        "{name, schema}}; the answer parses (and matches the schema)")

    @model_validator(mode="after")
    def _top_needs_logprobs(self) -> ChatCompletionRequest:
        if self.top_logprobs and not self.logprobs:
            raise ValueError("top_logprobs needs logprobs: true")
        return self

    @field_validator("response_format")
    @classmethod
    def _format(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        from llmops.errors import ChainError
        from llmops.llm.structured import parse_format

        try:
            parse_format(value)
        except ChainError as exc:
            raise ValueError(str(exc)) from None
        return value

    @property
    def options(self) -> dict[str, Any]:
        """The generation options this request sets to something other than "off" (a tool
        choice of none or auto without tools asks for nothing)."""
        off: dict[str, Any] = {"top_p": 1.0, "presence_penalty": 0.0, "frequency_penalty": 0.0,
                               "response_format": {"type": "text"}, "logprobs": False,
                               "n": 1, "tools": []}
        out = {k: v for k, default in off.items()
               if (v := getattr(self, k)) is not None and v != default}
        if out.get("logprobs") and self.top_logprobs is not None:
            out["top_logprobs"] = self.top_logprobs
        if self.tool_choice is not None and (self.tools or self.tool_choice not in (
                "none", "auto")):
            out["tool_choice"] = self.tool_choice
        if self.parallel_tool_calls is not None and self.tools:
            out["parallel_tool_calls"] = self.parallel_tool_calls
        return out

    @field_validator("stop")
    @classmethod
    def _stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        stops.normalize(value)  # ValueError: a 400 that names `stop`
        return value

    @property
    def stops(self) -> tuple[str, ...]:
        return stops.normalize(self.stop)

    def unhonoured(self) -> list[str]:
        """The parameters this request sets that the gateway does not honour, in order."""
        extra = self.model_extra or {}
        return [name for name, value in extra.items()
                if value not in UNHONOURED.get(name, (None,))]


# What every chat endpoint honours, whatever its backend; a backend adds its `honours`.
HONOURED = ("model", "messages", "max_tokens", "max_completion_tokens", "temperature", "seed",
            "user", "stream", "stream_options")

# OpenAI chat-completion parameters not honoured yet, with the values that ask for nothing.
# Any other parameter (a vendor extension, a typo) is refused too, unless it is None.
UNHONOURED: dict[str, tuple[Any, ...]] = {
    "logit_bias": (None, {}),
    "functions": (None, []),
    "function_call": (None, "none", "auto"),
    "modalities": (None, ["text"]),
    "store": (None, False),
    "service_tier": (None, "auto", "default"),
}


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    tool_calls: list[dict[str, Any]] | None = None


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: str = "stop"
    logprobs: dict[str, Any] | None = None


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class Source(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str
    score: float | None = None
    title: str | None = None
    doc_id: str | None = None
    url: str | None = None
    snippet: str | None = None


class ChatCompletion(BaseModel):
    """OpenAI's chat.completion, plus `sources` and `variant` (OpenAI clients ignore them)."""

    id: str = Field(description="the request id; feedback refers to it")
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    system_fingerprint: str | None = Field(None, description="the chain version that answered")
    sources: list[Source] = Field(default_factory=list)
    variant: str | None = None


class Model(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "llmops"
    description: str = ""
    variants: list[str] = Field(default_factory=list)
    parameters: list[str] = Field(
        default_factory=list, description="the request parameters every loaded variant "
        "honours (any other is refused by name); empty while none is loaded")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Model]


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


class FeedbackIn(RequestBody):
    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(min_length=1, max_length=64)
    rating: Literal["up", "down"]
    comment: str | None = Field(None, max_length=4000)


class FeedbackOut(BaseModel):
    object: Literal["feedback"] = "feedback"
    request_id: str
    reviewer: str
    rating: Literal["up", "down"]
    comment: str | None = None
    created_at: float = Field(description="first vote, unix seconds")
    updated_at: float = Field(description="this vote, unix seconds")
    votes: int = Field(description="votes this reviewer cast on this request; the last wins")
    endpoint: str | None = None
    variant: str | None = None
    chain: str | None = None
    chain_version: int | None = None


class FeedbackList(BaseModel):
    object: Literal["list"] = "list"
    data: list[FeedbackOut]
    has_more: bool = False


GATE_STATUSES = (400, 401, 403, 429)  # what the key gate answers on any route behind it


def gated(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`errors` of a route behind the key gate: the gate's refusals and the route's own."""
    return errors(*sorted(set(GATE_STATUSES) | set(statuses)))


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses, all with the OpenAI error body."""
    # the media type named: on an HTML route (/review) FastAPI would document text/html
    return {s: {"model": ErrorResponse, "content": {"application/json": {}}} for s in statuses}
