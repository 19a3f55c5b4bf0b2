"""A judge model on loopback: an OpenAI-compatible server that answers ragas' JSON requests.

ragas asks its judge for JSON that matches a schema it puts in the prompt
(instructor's JSON mode). This server reads that schema and answers a minimal
valid instance: strings are echoed text, numbers are `verdict` (1 by default).
It counts the calls, which is how tests prove the evaluation cache works.
`garbage = True` makes it answer text that is not JSON (a judge failure).
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # ragas sends bursts; the default of 5 stalls them


class JudgeMock:
    def __init__(self, verdict: int = 1) -> None:
        self.verdict = verdict
        self.garbage = False
        self.calls = 0
        self._lock = threading.Lock()
        mock = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with mock._lock:
                    mock.calls += 1
                content = mock.answer(body)
                data = json.dumps({
                    "id": "judge-1", "object": "chat.completion", "created": 0,
                    "model": body.get("model", "judge"),
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": content}}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                }).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> JudgeMock:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    def answer(self, body: dict[str, Any]) -> str:
        if self.garbage:
            return "I cannot judge this."
        text = "\n".join(str(m.get("content", "")) for m in body.get("messages", []))
        schema = _schema_in(text)
        return json.dumps(self.instance(schema, schema))

    def instance(self, schema: dict[str, Any], root: dict[str, Any]) -> Any:
        if "$ref" in schema:
            name = schema["$ref"].split("/")[-1]
            return self.instance(root.get("$defs", {}).get(name, {}), root)
        for key in ("anyOf", "allOf", "oneOf"):
            if key in schema:
                return self.instance(schema[key][0], root)
        kind = schema.get("type")
        if kind == "object" or "properties" in schema:
            return {k: self._field(k, v, root) for k, v in schema.get("properties", {}).items()}
        if kind == "array":
            return [self.instance(schema.get("items", {}), root)]
        if kind in ("integer", "number"):
            return self.verdict
        if kind == "boolean":
            return True
        return "The answer is supported by the context."

    def _field(self, name: str, schema: dict[str, Any], root: dict[str, Any]) -> Any:
        if name in ("verdict", "noncommittal") and schema.get("type") in ("integer", None):
            return self.verdict if name == "verdict" else 0
        return self.instance(schema, root)


def _schema_in(text: str) -> dict[str, Any]:
    """The first JSON object in the prompt that looks like a JSON schema."""
    for m in re.finditer(r"\{", text):
        try:
            obj, _ = json.JSONDecoder().raw_decode(text[m.start():])
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict) and ("properties" in obj or "$defs" in obj):
            return obj
    return {"type": "object", "properties": {}}
