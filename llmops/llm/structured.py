"""JSON mode: OpenAI's `response_format`, and constrained decoding for the local model.

`response_format` is `{"type": "text"}` (nothing asked), `{"type": "json_object"}` (any
JSON object) or `{"type": "json_schema", "json_schema": {"name": ..., "schema": {...}}}`.
The `openai` backend passes it upstream. The local backend compiles it to a grammar with
llguidance (`Grammar`) and masks, at every step of every constrained row of a batch, the
tokens the grammar does not allow; when the grammar is complete the row ends. So the
answer parses and matches the schema, unless `max_tokens` cuts it first
(`finish_reason: length`, as OpenAI's).

llguidance was chosen over xgrammar, outlines and lm-format-enforcer: one 3 MB wheel
with no dependencies beside our pins (xgrammar pulls triton and a TVM runtime), a
JSON-schema compiler, and a token mask per step in microseconds.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from llmops.errors import ChainError

_tokenizers: dict[int, Any] = {}
_lock = threading.Lock()


def parse_format(value: Any) -> dict[str, Any] | None:
    """The JSON schema `response_format` asks for (`{"type": "object"}` for json_object),
    or None for text; ChainError naming what is wrong."""
    if value is None:
        return None
    if not isinstance(value, dict) or "type" not in value:
        raise ChainError("response_format must be an object with a type: text, json_object "
                         "or json_schema")
    kind = value["type"]
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "object"}
    if kind == "json_schema":
        spec = value.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise ChainError("response_format.json_schema.schema must be a JSON schema object")
        return schema
    raise ChainError(f"response_format.type {kind!r} is unknown; allowed: text, json_object, "
                     "json_schema")


def compile_schema(schema: dict[str, Any]) -> str:
    """An llguidance grammar for `schema`; ChainError if it cannot be compiled."""
    import llguidance

    try:
        grammar = llguidance.LLMatcher.grammar_from_json_schema(
            json.dumps(schema), defaults={"whitespace_flexible": False})
    except (ValueError, RuntimeError, TypeError) as exc:
        raise ChainError(f"response_format: the schema cannot be used: {exc}") from None
    failed, problems = llguidance.LLMatcher.validate_grammar_with_warnings(grammar)
    if failed:
        raise ChainError(f"response_format: the schema cannot be used: {'; '.join(problems)}")
    return str(grammar)


def ll_tokenizer(tokenizer: Any) -> Any:
    """llguidance's view of a transformers tokenizer (built once per tokenizer)."""
    import llguidance.hf

    with _lock:
        key = id(tokenizer)
        if key not in _tokenizers:
            _tokenizers[key] = llguidance.hf.from_tokenizer(tokenizer)
        return _tokenizers[key]


class Grammars:
    """A logits processor for one `generate`: each constrained row's grammar masks its
    next token, and a finished grammar leaves only end-of-sequence."""

    def __init__(self, tokenizer: Any, grammars: list[str | None], width: int,
                 eos_id: int) -> None:
        import llguidance
        import llguidance.torch

        self.lt = ll_tokenizer(tokenizer)
        self.width, self.eos_id = width, eos_id
        self.matchers = [None if g is None else llguidance.LLMatcher(self.lt, g, log_level=0)
                         for g in grammars]
        self.consumed = [0] * len(grammars)
        self.mask = llguidance.torch.allocate_token_bitmask(len(grammars), self.lt.vocab_size)

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import llguidance.torch
        import torch

        vocab = self.lt.vocab_size
        for row, matcher in enumerate(self.matchers):
            if matcher is None:
                continue
            new = input_ids[row, self.width + self.consumed[row]:].tolist()
            for token in new:
                if not matcher.is_stopped():
                    matcher.consume_token(token)
            self.consumed[row] += len(new)
            if matcher.is_stopped() or matcher.is_error():
                scores[row, :] = -torch.inf
                scores[row, self.eos_id] = 0.0
                continue
            llguidance.torch.fill_next_token_bitmask(matcher, self.mask, row)
            llguidance.torch.apply_token_bitmask_inplace(scores[row:row + 1, :vocab],
                                                         self.mask[row:row + 1])
            if scores.shape[1] > vocab:
                scores[row, vocab:] = -torch.inf
        return scores
