"""The index's narrow errors (subclasses of the project's `LlmopsError`)."""

from __future__ import annotations

from llmops.errors import ConfigError, LlmopsError


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


class IndexStateError(LlmopsError):
    """The index cannot be refreshed as asked (e.g. built with another embedding model)."""


class VectorStoreError(LlmopsError):
    """The vector database (Chroma, embedded or server) failed or cannot be reached."""

    http_status = 503
