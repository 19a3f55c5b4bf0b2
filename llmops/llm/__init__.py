"""The generation floor: LLM backends behind one contract, found by name.

    >>> from llmops.llm import create_llm
    >>> llm = create_llm({"backend": "local", "max_tokens": 64})
    >>> llm.generate([{"role": "user", "content": "What is a generator?"}]).text

Built in (one module each): `local` (a transformers model in this process,
with batching and adapters), `openai` (any OpenAI-compatible endpoint),
`fake` (deterministic, for tests about something else). A backend of your own
subclasses `LLM`, declares its `Options` and registers with
`@register_backend("name")`.
"""

from llmops.llm import fake, local, openai  # noqa: F401  (they register themselves)
from llmops.llm.base import (
    LLM,
    Generation,
    LLMOptions,
    Messages,
    Piece,
    TokenLogprob,
    backend_class,
    backends,
    create_llm,
    parse_options,
    register_backend,
    text_of,
)
from llmops.llm.local import generate_chat

__all__ = [
    "LLM",
    "Generation",
    "LLMOptions",
    "Messages",
    "Piece",
    "TokenLogprob",
    "backend_class",
    "backends",
    "create_llm",
    "generate_chat",
    "parse_options",
    "register_backend",
    "text_of",
]
