"""llmops: the lifecycle of LLM prompts and chains on the MLflow registry."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
