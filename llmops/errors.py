"""Narrow exceptions. Raised deep, translated once at the CLI and HTTP edges.

Each message is one line that names what is wrong and, where it can, how to fix it.
"""

from __future__ import annotations


class LlmopsError(Exception):
    """Base of every error llmops raises on purpose."""

    exit_code = 1
    http_status = 500


class ConfigError(LlmopsError):
    """A setting or a config file is invalid."""

    exit_code = 2
    http_status = 500


class SpecError(LlmopsError):
    """An asset file (prompt, chain, recipe, routes) is malformed."""

    exit_code = 2
    http_status = 400


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


class HubError(LlmopsError):
    """A model reference cannot be resolved to local files."""


class BackendError(LlmopsError):
    """An LLM backend failed or refused the request."""

    http_status = 502


class BackendTimeoutError(BackendError):
    """An LLM backend did not answer in time."""

    http_status = 504


class ChainError(LlmopsError):
    """A chain is misconfigured or failed."""


class EvalError(LlmopsError):
    """An evaluation cannot run: a bad dataset, metric or judge setting."""

    exit_code = 2
    http_status = 400


class GateError(LlmopsError):
    """A gate cannot be evaluated (a bad gates file, nothing to gate)."""

    exit_code = 2
