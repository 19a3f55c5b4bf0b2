"""Narrow exceptions. Raised deep, translated once at the CLI and HTTP edges.

Each message is one line that names what is wrong and, where it can, how to fix it.
"""

from __future__ import annotations


class LlmopsError(Exception):
    """Base of every error llmops raises on purpose.

    `public`: whether the message may reach an HTTP client as it is. Messages of 4xx
    errors always do (they say what is wrong with the request); a 5xx error's message
    may hold internal text (an upstream's body, a database error), so clients get a
    generic one unless the class composes its message from safe parts only.
    """

    exit_code = 1
    http_status = 500
    public = False
    request_id: str | None = None  # the gateway's request it failed (for the client's message)


class ConfigError(LlmopsError):
    """A setting or a config file is invalid."""

    exit_code = 2
    http_status = 500


class SpecError(LlmopsError):
    """An asset file (prompt, chain, recipe, routes) is malformed."""

    exit_code = 2
    http_status = 400


class RecipeError(SpecError):
    """A fine-tuning recipe or its data is malformed (nothing is trained)."""

    exit_code = 1


class RenderError(LlmopsError):
    """A template could not be rendered with the values given."""

    http_status = 400


class RegistryError(LlmopsError):
    """The model registry refused or failed an operation."""


class NotFoundError(RegistryError):
    """A model, version or alias does not exist."""

    http_status = 404


class AliasConflictError(RegistryError):
    """A compare-and-set alias move found another version than expected."""

    http_status = 409


class TransferError(RegistryError):
    """A version cannot be copied between two profiles' registries (same registry on both
    sides, an archived source, a version llmops did not register)."""


class HubError(LlmopsError):
    """A model reference cannot be resolved to local files."""


class BackendError(LlmopsError):
    """An LLM backend failed or refused the request."""

    http_status = 502


class BackendTimeoutError(BackendError):
    """An LLM backend did not answer in time."""

    http_status = 504
    public = True


class ChainError(LlmopsError):
    """A chain is misconfigured or failed."""


class EvalError(LlmopsError):
    """An evaluation cannot run: a bad dataset, metric or judge setting."""

    exit_code = 2
    http_status = 400


class GateError(LlmopsError):
    """A gate cannot be evaluated (a bad gates file, nothing to gate)."""

    exit_code = 2


class StatsError(EvalError, ValueError):
    """Counts or parameters that no proportion can have (negative, successes above n...)."""


# -- the vector index ------------------------------------------------------------


class SourceError(ConfigError):
    """An index source is misconfigured or unreadable (unknown kind, missing path, empty glob)."""


class IndexLockedError(LlmopsError):
    """Another refresh of the same index holds the lock."""

    exit_code = 3
    http_status = 409


class IndexNotBuiltError(LlmopsError):
    """The index has no version yet: nothing to query."""

    exit_code = 4
    http_status = 503
    public = True


class IndexStateError(LlmopsError):
    """The index cannot be refreshed as asked (e.g. built with another embedding model)."""


class VectorStoreError(LlmopsError):
    """The vector database (Chroma, embedded or server) failed or cannot be reached."""

    http_status = 503


# -- the gateway (`serving/errors.py` turns them into OpenAI's error body) ------


class GatewayError(LlmopsError):
    """An error the gateway answers with; `code`, `param` and headers go into the response."""

    http_status = 400
    code: str | None = None
    public = True  # composed by the gateway from what the request and routes say

    def __init__(self, message: str, *, param: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.param = param
        self.headers = headers or {}


class BadRequestError(GatewayError):
    """The request is malformed."""

    http_status = 400


class UnsupportedParameterError(BadRequestError):
    """A request parameter the endpoint does not honour: refused by name, never ignored."""

    code = "unsupported_parameter"


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


class OverCapError(GatewayError):
    """`max_tokens` is above the endpoint's cap."""

    http_status = 422
    code = "max_tokens_over_cap"


class RateLimitedError(GatewayError):
    """The key sent more requests than its rate allows."""

    http_status = 429
    code = "rate_limit_exceeded"


class KeyBusyError(RateLimitedError):
    """The key has as many requests in flight on the endpoint as one key may."""

    code = "concurrency_limit_exceeded"


class BusyError(GatewayError):
    """The endpoint is at its maximum of concurrent requests, or a variant is not loaded."""

    http_status = 503
    code = "overloaded"


# -- store
class StoreError(LlmopsError):
    """The request and feedback log refused or failed an operation."""


class UnknownRequestError(StoreError):
    """Feedback names a request id that the log does not hold."""

    http_status = 404


class VoteRefusedError(StoreError):
    """The request exists but takes no vote (a shadow answer, a stream still in progress)."""

    http_status = 409


class StoreBusyError(StoreError):
    """The log cannot take a write in time: its lock is held, or too many writes wait.

    Nothing was acknowledged: the client may retry after `Retry-After` seconds.
    """

    http_status = 503
    code = "log_unavailable"
    public = True

    def __init__(self, message: str, *, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.headers = {"Retry-After": str(retry_after_s)}


class UnknownEvaluationError(EvalError):
    """No evaluation with that id in the log."""

    http_status = 404


class UnknownVariantError(EvalError):
    """A comparison names a variant (or chain version) with no requests in the log."""

    http_status = 404


class ScaffoldError(LlmopsError):
    """`llmops init` cannot write the project (a bad option, files it would overwrite)."""

    exit_code = 2
