"""POST /v1/chat/completions: OpenAI's chat API over the endpoints of routes.yaml."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from llmops.errors import LlmopsError
from llmops.llm import Generation
from llmops.serving.answer import answer
from llmops.serving.deps import ClientKey, GatewayDep
from llmops.serving.errors import client_message, error_body
from llmops.serving.plan import Plan, plan
from llmops.serving.record import Outcome
from llmops.serving.schemas import ChatCompletion, ChatCompletionRequest, gated
from llmops.serving.stream import Stream, start_stream

router = APIRouter(tags=["chat"])

# One server-sent event: `data` holds a chat.completion.chunk as JSON, or `[DONE]` last.
_EVENT = {"type": "object", "properties": {
    "data": {"type": "string", "description": "a chat.completion.chunk as JSON, or [DONE]"},
    "event": {"type": "string"}, "id": {"type": "string"}}}
_STREAM_DOC: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {"schema": _EVENT}},
          "description": "chat.completion, or chat.completion.chunk events when stream is true"},
}


def _dumps(data: Any) -> bytes:
    import orjson

    return orjson.dumps(data)


def _headers(p: Plan) -> dict[str, str]:
    h = {"x-request-id": p.request_id, "x-llmops-variant": p.variant}
    if p.live is not None:
        h["x-llmops-chain"] = p.live.label
    return h


@router.post(
    "/v1/chat/completions", response_model=ChatCompletion,
    responses={**_STREAM_DOC, **gated(404, 413, 422, 500, 502, 503, 504)},
)
async def chat_completions(
    body: ChatCompletionRequest, request: Request, key: ClientKey, gw: GatewayDep
) -> Response:
    """Answer with the endpoint named by `model`; `id` is the request id for feedback."""
    p = plan(gw, body, key, dict(request.headers))
    if p.stream:
        stream = await start_stream(gw, p)
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return _SSE(stream, _events(p, stream.pieces(), include_usage),
                    media_type="text/event-stream",
                    headers={**_headers(p), "cache-control": "no-cache"})
    out = await answer(gw, p)
    return Response(_dumps(_completion(out)), media_type="application/json", headers=_headers(p))


class _SSE(StreamingResponse):
    """A stream that closes its answer however the response ends (even unsent)."""

    def __init__(self, stream: Stream, content: AsyncIterator[bytes], **kw: Any) -> None:
        super().__init__(content, **kw)
        self.stream = stream

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.stream.close()


def _usage(out: Outcome) -> dict[str, int]:
    pt, ct = out.usage
    return {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct}


def _answers(out: Outcome) -> list[tuple[str, str, Generation | None]]:
    """Each answer of the request (more than one with n > 1): text, finish, generation."""
    gen = out.generation
    return [(out.answer, out.finish_reason, gen),
            *((g.text, g.finish_reason, g) for g in (gen.alternatives if gen else ()))]


def _logprobs(gen: Generation | None) -> dict[str, Any] | None:
    if gen is None or gen.logprobs is None:
        return None
    return {"content": [t.to_openai() for t in gen.logprobs], "refusal": None}


def _message(text: str, gen: Generation | None) -> dict[str, Any]:
    if gen is not None and gen.tool_calls:
        return {"role": "assistant", "content": text or None, "tool_calls": list(gen.tool_calls)}
    return {"role": "assistant", "content": text}


def _completion(out: Outcome) -> dict[str, Any]:
    p = out.plan
    return {
        "id": p.request_id, "object": "chat.completion", "created": int(time.time()),
        "model": p.endpoint_name,
        "choices": [{"index": i, "message": _message(text, gen), "finish_reason": finish,
                     "logprobs": _logprobs(gen)}
                    for i, (text, finish, gen) in enumerate(_answers(out))],
        "usage": _usage(out), "system_fingerprint": out.chain_label,
        "sources": out.sources, "variant": p.variant,
    }


async def _events(p: Plan, pieces: AsyncIterator[str | Outcome],
                  include_usage: bool) -> AsyncIterator[bytes]:
    created = int(time.time())
    head = {"id": p.request_id, "object": "chat.completion.chunk", "created": created,
            "model": p.endpoint_name, "system_fingerprint": p.live.label if p.live else None}

    def chunk(delta: dict[str, Any], finish: str | None = None, index: int = 0,
              logprobs: dict[str, Any] | None = None, **extra: Any) -> bytes:
        choice = {"index": index, "delta": delta, "finish_reason": finish,
                  **({"logprobs": logprobs} if logprobs else {})}
        return b"data: " + _dumps({**head, "choices": [choice], **extra}) + b"\n\n"

    yield chunk({"role": "assistant", "content": ""})
    try:
        async for item in pieces:
            if isinstance(item, Outcome):
                # the first answer came as it was made; its tool calls and log probabilities,
                # and the other answers of n > 1, come whole before it finishes
                answers = _answers(item)
                for i, (text, finish, gen) in enumerate(answers[1:], 1):
                    yield chunk({"role": "assistant", "content": text}, index=i)
                    yield chunk({}, finish, index=i, logprobs=_logprobs(gen))
                gen = answers[0][2]
                if gen is not None and gen.tool_calls:
                    yield chunk({"tool_calls": [{"index": n, **c}
                                                for n, c in enumerate(gen.tool_calls)]})
                yield chunk({}, item.finish_reason, logprobs=_logprobs(gen),
                            sources=item.sources, variant=p.variant)
                if include_usage:
                    yield b"data: " + _dumps({**head, "choices": [],
                                              "usage": _usage(item)}) + b"\n\n"
            else:
                yield chunk({"content": item})
    except LlmopsError as exc:  # after the 200 went out: an error event, as OpenAI sends
        body = error_body(exc.http_status, client_message(exc), code=getattr(exc, "code", None))
        yield b"data: " + _dumps(body) + b"\n\n"
    yield b"data: [DONE]\n\n"
