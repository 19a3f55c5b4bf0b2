"""A chain's YAML config, beside its Python file in `chains/`.

```yaml
name: rag_qa
kind: rag                      # a registered chain kind: rag, chat
description: Answers Python questions from the Python documentation.
prompt: qa@production          # resolved to an exact version when the chain is logged
retrieval: {k: 4}              # rag only: chunks retrieved from the live index
llm: {backend: local, max_tokens: 200, temperature: 0.0}
tools: none                    # passthrough: a client's tools go to the LLM (openai backend)
```

`llm` is checked against its backend's own options (`llmops.llm`): a field
that backend does not take is an error that names it. When a chain is
logged, llmops adds what makes the version stand alone: the exact prompt
version, the adapter version, the base model, and the index it reads
(`index`: collection and vector-store location).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SerializeAsAny, model_validator

from llmops.errors import SpecError
from llmops.llm import LLMOptions, parse_options
from llmops.validation import read_yaml_model

LLMField = Annotated[SerializeAsAny[LLMOptions], BeforeValidator(parse_options)]


class RetrievalSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    k: int = Field(4, ge=1, le=50, description="chunks retrieved per question")
    max_context_chars: int = Field(
        3000, ge=100, description="cap on the context handed to the prompt, characters"
    )


class IndexRef(BaseModel):
    """The index a logged rag chain reads: its collection, and where the vector store was.

    `path` is relative to LLMOPS_HOME when the store lay inside it, so a copied
    or moved home still works; the settings' own `vector` section, when set
    (LLMOPS_VECTOR__*, a profile), takes precedence over the logged location.
    """

    model_config = ConfigDict(extra="forbid")

    collection: str = Field(description="Chroma collection name")
    mode: Literal["embedded", "server"] = "embedded"
    path: str | None = Field(None, description="embedded: folder, relative to LLMOPS_HOME or not")
    host: str | None = Field(None, description="server: host")
    port: int | None = Field(None, description="server: port")


class ChainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_\-]{0,62}$", description="registered as chain.<name>")
    kind: str = Field(description="registered chain kind: rag, chat, ...")
    description: str = Field(min_length=1)
    prompt: str = Field(description="prompt reference: qa@staging, qa/3 (pinned at log time)")
    retrieval: RetrievalSpec | None = Field(None, description="rag: how much to retrieve")
    llm: LLMField = Field(default_factory=lambda: parse_options({}))
    question_variable: str = Field("question", description="prompt variable for the question")
    context_variable: str = Field("context", description="rag: prompt variable for the context")
    tags: dict[str, str] = Field(default_factory=dict)
    index: IndexRef | None = Field(None, description="rag: set when logged; the index it reads")
    tools: Literal["none", "passthrough"] = Field(
        "none", description="passthrough: a client's tools, tool_choice and tool turns go to "
        "the LLM, and its tool calls come back to the client (a backend that honours tools: "
        "openai); none: a request with tools is refused")

    @model_validator(mode="after")
    def _tools_need_a_backend_for_them(self) -> ChainConfig:
        from llmops.llm import backend_class

        if self.tools == "passthrough" and "tools" not in backend_class(self.llm.backend).honours:
            raise ValueError(f"tools: passthrough needs a backend that honours tools (openai), "
                             f"not {self.llm.backend}")
        return self

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
