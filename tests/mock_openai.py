"""A small OpenAI-compatible chat server for tests and benchmarks, on loopback.

`MockOpenAI().start()` serves `/v1/chat/completions` (plain and streaming)
from a thread. Scripted faults (`fail(...)`) answer the next requests with a
status, a Retry-After header or a delay; every request is counted.

Run it alone for benchmarks: `python tests/mock_openai.py --port 9100`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse


@dataclass
class Fault:
    status: int = 500
    retry_after: str | None = None
    delay_s: float = 0.0
    message: str = "scripted fault"


@dataclass
class MockState:
    faults: deque[Fault] = field(default_factory=deque)
    calls: int = 0
    bodies: list[dict[str, Any]] = field(default_factory=list)
    call_times: list[float] = field(default_factory=list)
    delay_s: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)


def _answer(body: dict[str, Any]) -> str:
    messages = body.get("messages", [])
    if messages and messages[-1].get("role") == "tool":  # a tool answered: say what it said
        return f"the tool said {messages[-1]['content']}"
    last = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
    return f"mock answer ({len(last)} chars asked)"


def _tool_call(body: dict[str, Any]) -> dict[str, Any] | None:
    """With tools (and no tool result yet): a call of the first tool (or the one chosen)."""
    tools, choice = body.get("tools") or [], body.get("tool_choice")
    messages = body.get("messages", [])
    if not tools or choice == "none" or (messages and messages[-1].get("role") == "tool"):
        return None
    name = (choice or {}).get("function", {}).get("name") if isinstance(choice, dict) else None
    last = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
    return {"id": "call_mock1", "type": "function",
            "function": {"name": name or tools[0]["function"]["name"],
                         "arguments": json.dumps({"question": last})}}


def _logprobs(body: dict[str, Any], pieces: list[str]) -> dict[str, Any] | None:
    """Made-up log probabilities of the answer's pieces, when asked for."""
    if not body.get("logprobs"):
        return None
    top = int(body.get("top_logprobs") or 0)

    def entry(token: str, lp: float) -> dict[str, Any]:
        return {"token": token, "logprob": lp, "bytes": list(token.encode())}

    return {"content": [{**entry(p, -0.1 * (i + 1)),
                         "top_logprobs": [entry(p, -0.1 * (i + 1)), *(
                             entry(f"alt{k}", -1.0 - k) for k in range(top - 1))][:top]}
                        for i, p in enumerate(pieces)]}


def make_app(state: MockState) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        body = await request.json()
        with state.lock:
            state.calls += 1
            state.bodies.append(body)
            state.call_times.append(time.monotonic())
            fault = state.faults.popleft() if state.faults else None
        delay = fault.delay_s if fault else state.delay_s
        if delay:
            await asyncio.sleep(delay)
        if fault and fault.status >= 400:
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            return JSONResponse({"error": {"message": fault.message, "type": "mock"}},
                                status_code=fault.status, headers=headers)
        words = _answer(body).split(" ")
        limit = body.get("max_tokens") or body.get("max_completion_tokens") or len(words)
        finish = "length" if len(words) > limit else "stop"
        text = " ".join(words[:limit])
        usage = {"prompt_tokens": 10, "completion_tokens": len(text.split()),
                 "total_tokens": 10 + len(text.split())}
        created = int(time.time())
        call = _tool_call(body)
        parts = [w if i == 0 else " " + w for i, w in enumerate(text.split(" "))]
        if body.get("stream"):
            async def events() -> Any:
                head = {"id": "mock-1", "object": "chat.completion.chunk", "created": created,
                        "model": body.get("model", "mock")}
                if call is not None:  # the call in three deltas, as OpenAI streams one
                    args = call["function"]["arguments"]
                    for delta in ({"index": 0, "id": call["id"], "type": "function",
                                   "function": {"name": call["function"]["name"],
                                                "arguments": ""}},
                                  {"index": 0, "function": {"arguments": args[:5]}},
                                  {"index": 0, "function": {"arguments": args[5:]}}):
                        chunk = {**head, "choices": [{"index": 0, "delta": {
                            "tool_calls": [delta]}, "finish_reason": None}]}
                        yield f"data: {json.dumps(chunk)}\n\n"
                    chunk = {**head, "choices": [{"index": 0, "delta": {},
                                                  "finish_reason": "tool_calls"}]}
                    yield f"data: {json.dumps(chunk)}\n\n"
                for i, piece in enumerate(parts if call is None else []):
                    lp = _logprobs(body, [piece])
                    chunk = {**head, "choices": [{"index": 0, "delta": {"content": piece},
                                                  "finish_reason": finish if i == len(parts) - 1
                                                  else None,
                                                  **({"logprobs": lp} if lp else {})}]}
                    yield f"data: {json.dumps(chunk)}\n\n"
                if (body.get("stream_options") or {}).get("include_usage"):
                    yield "data: " + json.dumps({"id": "mock-1", "object": "chat.completion.chunk",
                                                 "created": created, "choices": [],
                                                 "model": body.get("model", "mock"),
                                                 "usage": usage}) + "\n\n"
                yield "data: [DONE]\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")
        return {
            "id": "mock-1", "object": "chat.completion", "created": created,
            "model": body.get("model", "mock"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}
                         if call is None else {"role": "assistant", "content": None,
                                               "tool_calls": [call]},
                         "finish_reason": finish if call is None else "tool_calls",
                         "logprobs": None if call else _logprobs(body, parts)}],
            "usage": usage,
        }

    return app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MockOpenAI:
    """The mock server in a background thread; `base_url` ends in /v1."""

    def __init__(self, port: int | None = None) -> None:
        self.state = MockState()
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        config = uvicorn.Config(make_app(self.state), host="127.0.0.1", port=self.port,
                                log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> MockOpenAI:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("mock OpenAI server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)

    def fail(self, *faults: Fault) -> None:
        self.state.faults.extend(faults)

    def __enter__(self) -> MockOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds per request")
    args = parser.parse_args()
    st = MockState(delay_s=args.delay)
    uvicorn.run(make_app(st), host="127.0.0.1", port=args.port, log_level="warning",
                access_log=False)
