"""Prompts: YAML specs in `prompts/`, versioned as `prompt.<name>` pyfunc models."""

from llmops.prompts.api import (
    Prompt,
    PushResult,
    compare,
    diff,
    list_prompts,
    load,
    promote,
    push,
    versions,
)
from llmops.prompts.render import render_messages
from llmops.prompts.spec import PromptSpec, load_spec

__all__ = [
    "Prompt",
    "PromptSpec",
    "PushResult",
    "compare",
    "diff",
    "list_prompts",
    "load",
    "load_spec",
    "promote",
    "push",
    "render_messages",
    "versions",
]
