"""The gateway's translation of errors into OpenAI's error body.

The error classes live in `llmops.errors` (`GatewayError` and its subclasses,
with every other llmops error); this module maps them onto HTTP:

`{"error": {"message": ..., "type": ..., "param": ..., "code": ...}}` with the
status of the llmops error (`http_status`), so OpenAI clients raise the right
exception class (404 -> `openai.NotFoundError`, 429 -> `RateLimitError`, ...).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from llmops.errors import LlmopsError

log = logging.getLogger("llmops.serving")

TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
    404: "not_found_error", 405: "invalid_request_error", 409: "conflict_error",
    413: "invalid_request_error", 422: "invalid_request_error", 429: "rate_limit_error",
    500: "api_error", 502: "api_error", 503: "service_unavailable", 504: "timeout_error",
}


GENERIC = {
    500: "internal error", 502: "the model backend failed", 503: "a service the gateway "
    "needs is unavailable", 504: "no answer in time",
}


def client_message(exc: LlmopsError) -> str:
    """What a client may read of an error: 4xx and public messages as they are; for other
    5xx errors a generic line with the request id (the gateway log has the details)."""
    if exc.http_status < 500 or exc.public:
        return str(exc)
    where = f" (request {exc.request_id})" if exc.request_id else ""
    return f"{GENERIC.get(exc.http_status, 'internal error')}{where}; see the gateway log"


def error_body(status: int, message: str, *, code: str | None = None,
               param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": TYPES.get(status, "api_error"),
                      "param": param, "code": code}}


def error_response(status: int, message: str, *, code: str | None = None,
                   param: str | None = None,
                   headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message, code=code, param=param), status_code=status,
                        headers=headers)


def install(app: FastAPI) -> None:
    """Translate every error at the HTTP edge, once."""

    @app.exception_handler(LlmopsError)
    async def _llmops(request: Request, exc: LlmopsError) -> JSONResponse:
        status = exc.http_status
        if status >= 500:
            # the message may quote user text (an upstream echoing the prompt): the log
            # names the error and the request; the request's row keeps the message
            log.warning("%s %s -> %d: %s%s (request %s)", request.method, request.url.path,
                        status, type(exc).__name__, f": {exc}" if exc.public else "",
                        exc.request_id or "-")
        return error_response(status, client_message(exc), code=getattr(exc, "code", None),
                              param=getattr(exc, "param", None),
                              headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errs = exc.errors()
        first = errs[0] if errs else {}
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        where = ".".join(loc) or "body"
        return error_response(400, f"{where}: {first.get('msg', 'invalid request')}",
                              param=where if loc else None)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal error; see the gateway log")
