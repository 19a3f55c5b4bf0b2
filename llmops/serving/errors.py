"""Errors of the gateway, and their translation into OpenAI's error body.

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


class GatewayError(LlmopsError):
    """An error the gateway answers with; `code`, `param` and headers go into the response."""

    http_status = 400
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.param = param
        self.headers = headers or {}


class BadRequestError(GatewayError):
    """The request is malformed."""

    http_status = 400


class UnauthorizedError(GatewayError):
    """No API key, or one the gateway does not know."""

    http_status = 401
    code = "invalid_api_key"


class ForbiddenError(GatewayError):
    """The key's role may not use this route."""

    http_status = 403
    code = "insufficient_role"


class ModelNotFoundError(GatewayError):
    """The `model` names no endpoint of the routes."""

    http_status = 404
    code = "model_not_found"


class NotFoundGatewayError(GatewayError):
    """A resource named in the request does not exist."""

    http_status = 404


class BodyTooLargeError(GatewayError):
    """The request body is above the gateway's cap."""

    http_status = 413
    code = "request_too_large"


class OverCapError(GatewayError):
    """`max_tokens` is above the endpoint's cap."""

    http_status = 422
    code = "max_tokens_over_cap"


class RateLimitedError(GatewayError):
    """The key sent more requests than its rate allows."""

    http_status = 429
    code = "rate_limit_exceeded"


class BusyError(GatewayError):
    """The endpoint is at its maximum of concurrent requests, or a variant is not loaded."""

    http_status = 503
    code = "overloaded"


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
            log.warning("%s %s -> %d: %s", request.method, request.url.path, status, exc)
        return error_response(status, str(exc), code=getattr(exc, "code", None),
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
