"""Limits that hold before any work is done: body size (413) and per-key rate (429)."""

from __future__ import annotations

import math
import threading
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llmops.serving.errors import error_body


class BodySizeLimit:
    """ASGI middleware: a body above `max_bytes` gets 413 before a handler reads it.

    A declared Content-Length is checked up front (the HTTP server holds the
    client to it); a body without one (chunked) is read here up to the cap
    and handed on only if it fits.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = None
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = None
        if declared is not None:
            if declared > self.max_bytes:
                await self._reject(send)
                return
            await self.app(scope, receive, send)
            return
        if scope.get("method") in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        parts: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break  # the client went away; the app sees an empty body
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self._reject(send)
                return
            parts.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(parts), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _reject(self, send: Send) -> None:
        import json

        body = json.dumps(error_body(
            413, f"request body is above the cap of {self.max_bytes} bytes",
            code="request_too_large")).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


class RateLimiter:
    """A token bucket per key: `rate` requests/s sustained, `burst` at once (one process).

    At most `max_entries` buckets are kept (the least recently used go first: a bucket
    that went is full again, which a key that idle long enough would have anyway).
    """

    def __init__(self, rate: float, burst: int, *, max_entries: int = 100_000) -> None:
        self.rate, self.burst = rate, burst
        self.max_entries = max_entries
        self._buckets: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def acquire(self, key: str, now: float | None = None) -> float | None:
        """None if the request may go; else the seconds until it may (for Retry-After)."""
        t = time.monotonic() if now is None else now
        with self._lock:
            bucket = self._buckets.pop(key, None)
            if bucket is None:
                bucket = [float(self.burst), t]
                if len(self._buckets) >= self.max_entries:
                    del self._buckets[next(iter(self._buckets))]
            self._buckets[key] = bucket  # the most recently used last
            tokens = min(float(self.burst), bucket[0] + (t - bucket[1]) * self.rate)
            bucket[1] = t
            if tokens >= 1.0:
                bucket[0] = tokens - 1.0
                return None
            bucket[0] = tokens
            return (1.0 - tokens) / self.rate

    def exhausted(self, key: str, now: float | None = None) -> bool:
        """Whether `key` has no request left now (nothing is taken)."""
        t = time.monotonic() if now is None else now
        bucket = self._buckets.get(key)
        return bucket is not None and bucket[0] + (t - bucket[1]) * self.rate < 1.0

    @staticmethod
    def retry_after(seconds: float) -> str:
        return str(max(1, math.ceil(seconds)))


