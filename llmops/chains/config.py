"""A chain's YAML config, beside its Python file in `chains/`.

```yaml
name: rag_qa
kind: rag                      # a registered chain kind: rag, chat
description: Answers Python questions from the Python documentation.
prompt: qa@production          # resolved to an exact version when the chain is logged
retrieval: {k: 4}              # rag only: chunks retrieved from the live index
llm: {backend: local, max_tokens: 200, temperature: 0.0}
```
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from llmops.chains.llm import LLMSpec
from llmops.config import read_yaml_model
from llmops.errors import SpecError


class RetrievalSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    k: int = Field(4, ge=1, le=50, description="chunks retrieved per question")
    max_context_chars: int = Field(
        3000, ge=100, description="cap on the context handed to the prompt, characters"
    )


class ChainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_\-]{0,62}$", description="registered as chain.<name>")
    kind: str = Field(description="registered chain kind: rag, chat, ...")
    description: str = Field(min_length=1)
    prompt: str = Field(description="prompt reference: qa@staging, qa/3 (pinned at log time)")
    retrieval: RetrievalSpec | None = Field(None, description="rag: how much to retrieve")
    llm: LLMSpec = Field(default_factory=LLMSpec)
    question_variable: str = Field("question", description="prompt variable for the question")
    context_variable: str = Field("context", description="rag: prompt variable for the context")
    tags: dict[str, str] = Field(default_factory=dict)

    @property
    def registered_name(self) -> str:
        return f"chain.{self.name}"


def load_chain_config(code_path: Path) -> ChainConfig:
    """The YAML config beside a chain's Python file (`chains/x.py` -> `chains/x.yaml`)."""
    path = code_path.with_suffix(".yaml")
    if not code_path.is_file():
        raise SpecError(f"{code_path}: no such chain file")
    if not path.is_file():
        raise SpecError(f"{code_path}: its config {path.name} is missing beside it")
    cfg = read_yaml_model(path, ChainConfig)
    if cfg.name != code_path.stem:
        raise SpecError(f"{path}: name: {cfg.name!r} must match the file name {code_path.stem!r}")
    return cfg
