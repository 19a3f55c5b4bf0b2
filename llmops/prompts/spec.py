"""The prompt spec: one YAML file per prompt in `prompts/`.

```yaml
name: qa                       # must match the file name
description: Answer a Python question from retrieved documentation.
messages:
  - role: system
    content: You answer questions about Python. ...
  - role: user
    content: "Documentation:\\n{{context}}\\n\\nQuestion: {{question}}"
variables:
  context: {description: retrieved chunks, untrusted: true}
  question: {description: the user's question, untrusted: true}
parameters: {temperature: 0.0, max_tokens: 200}
tags: {task: rag}
```

Placeholders are `{{name}}` and nothing else: no filters, no attributes, no
statements. Every placeholder must be declared and every declared variable
used; an untrusted variable may appear only in user messages.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from llmops.errors import SpecError
from llmops.validation import describe_validation_error

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
# Anything that looks like template syntax but is not a plain placeholder.
_TEMPLATE_SYNTAX = re.compile(r"\{\{|\}\}|\{%|%\}|\{#|#\}")
NAME = r"^[a-z][a-z0-9_\-]{0,62}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Message(_Strict):
    role: Literal["system", "user", "assistant"] = Field(description="chat role")
    content: str = Field(min_length=1, description="text with {{variable}} placeholders")


class Variable(_Strict):
    description: str = Field("", description="what the value is, for humans")
    required: bool = Field(True, description="rendering without it is an error")
    default: str | None = Field(None, description="value when an optional variable is omitted")
    untrusted: bool = Field(
        False, description="user or retrieved input: inserted only as delimited data in user turns"
    )


class Parameters(_Strict):
    """Default model parameters; callers may override them per request."""

    temperature: float = Field(0.0, ge=0.0, le=2.0, description="0 means greedy decoding")
    max_tokens: int = Field(256, ge=1, le=32768, description="cap on generated tokens")
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    stop: list[str] = Field(default_factory=list, description="stop sequences")


class PromptSpec(_Strict):
    name: str = Field(pattern=NAME, description="registered as prompt.<name>")
    description: str = Field(min_length=1, description="what the prompt is for")
    messages: list[Message] = Field(min_length=1)
    variables: dict[str, Variable] = Field(default_factory=dict)
    parameters: Parameters = Field(default_factory=Parameters)
    tags: dict[str, str] = Field(default_factory=dict)

    @field_validator("variables")
    @classmethod
    def _variable_names(cls, value: dict[str, Variable]) -> dict[str, Variable]:
        for name in value:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError(f"variable name {name!r} is not an identifier")
        return value

    @property
    def registered_name(self) -> str:
        return f"prompt.{self.name}"

    def content_hash(self) -> str:
        """sha256 of the canonical JSON form: equal specs, equal hash."""
        canon = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canon.encode()).hexdigest()

    def to_yaml(self) -> str:
        return yaml.safe_dump(
            self.model_dump(mode="json", exclude_defaults=False), sort_keys=False,
            allow_unicode=True, width=100,
        )


def check_template(spec: PromptSpec) -> list[tuple[str, str]]:
    """Cross-field problems as (field, message); empty when the spec is sound."""
    problems: list[tuple[str, str]] = []
    used: set[str] = set()
    for i, msg in enumerate(spec.messages):
        where = f"messages[{i}].content"
        leftover = _TEMPLATE_SYNTAX.search(PLACEHOLDER.sub("", msg.content))
        if leftover:
            problems.append(
                (where, f"template syntax {leftover.group()!r} is not allowed; "
                        "only {{variable}} placeholders")
            )
        for var in PLACEHOLDER.findall(msg.content):
            used.add(var)
            decl = spec.variables.get(var)
            if decl is None:
                problems.append((where, f"variable {var!r} is used but not declared in variables"))
            elif decl.untrusted and msg.role != "user":
                problems.append(
                    (where, f"untrusted variable {var!r} may appear only in user messages, "
                            f"not in {msg.role} messages")
                )
    for var, decl in spec.variables.items():
        if var not in used:
            problems.append((f"variables.{var}", "declared but not used in any message"))
        if decl.required and decl.default is not None:
            problems.append((f"variables.{var}.default", "a required variable takes no default"))
    return problems


def parse_spec(data: Any, source: str) -> PromptSpec:
    """Validate parsed YAML; errors name `source` and the field."""
    if not isinstance(data, dict):
        raise SpecError(f"{source}: expected a mapping at the top level")
    try:
        spec = PromptSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(f"{source}: {describe_validation_error(exc, PromptSpec)}") from None
    problems = check_template(spec)
    if problems:
        raise SpecError(f"{source}: " + "; ".join(f"{f}: {m}" for f, m in problems))
    return spec


def load_spec(path: Path) -> PromptSpec:
    """Read and validate one prompt file; its `name` must match the file name."""
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise SpecError(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    spec = parse_spec(data, str(path))
    if spec.name != path.stem:
        raise SpecError(f"{path}: name: {spec.name!r} must match the file name {path.stem!r}")
    return spec


def spec_from_text(text: str, source: str = "<prompt>") -> PromptSpec:
    return parse_spec(yaml.safe_load(text), source)
