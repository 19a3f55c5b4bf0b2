"""The `index:` section of llmops.yaml: collection, chunking, batching and sources.

Example:
    index:
      collection: python-docs
      chunk_size: 800        # characters
      chunk_overlap: 100     # characters
      sources:
        - kind: python-docs
        - kind: files
          name: notes
          glob: docs/**/*.md
        - kind: jsonl
          name: faq
          path: data/faq.jsonl

Each source's keys are checked by the config model of its kind, found in the
registry of source kinds (`sources.py`, the floor below this module);
errors name the file and the dotted key, e.g. `llmops.yaml: index.sources.1.glob: ...`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from llmops.config import CONFIG_FILE, load_config_file
from llmops.errors import ConfigError
from llmops.index.sources import SourceConfig, source_class

# Chroma's rule for collection names: 3-512 characters of [a-zA-Z0-9._-],
# starting and ending with a letter or digit.
_COLLECTION_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{1,510}[A-Za-z0-9]$"
_SOURCE_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


class IndexConfig(BaseModel):
    """One vector index: where it lives, how documents become chunks, where they come from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    collection: str = Field(
        "llmops-docs", pattern=_COLLECTION_NAME, description="Chroma collection name"
    )
    chunk_size: int = Field(800, gt=0, description="characters per chunk, at most")
    chunk_overlap: int = Field(100, ge=0, description="characters shared by neighbouring chunks")
    batch_size: int = Field(
        128, gt=0, description="chunks embedded and written per batch (progress granularity)"
    )
    embed_batch_size: int = Field(32, gt=0, description="sentences per forward pass of the model")
    embed_engine: Literal["local", "spark"] = Field(
        "local", description="embed in this process, or on Spark (`spark.master`; "
        "llmops/index/spark_embed.py) for large corpora")
    sources: list[SourceConfig] = Field(default_factory=list, description="document sources")

    @model_validator(mode="after")
    def _check(self) -> IndexConfig:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError(
                f"chunk_overlap ({self.chunk_overlap}) must be smaller than "
                f"chunk_size ({self.chunk_size})"
            )
        seen: set[str] = set()
        for src in self.sources:
            name = src.source_name
            if not _SOURCE_NAME.match(name):
                raise ValueError(
                    f"source name {name!r} must be lowercase letters, digits, '_', '.' or '-'"
                )
            if name in seen:
                raise ValueError(f"two sources are named {name!r}; give one a distinct `name`")
            seen.add(name)
        return self

    @classmethod
    def from_raw(cls, raw: dict[str, Any], where: str = "index") -> IndexConfig:
        """Validate a raw mapping (the `index:` section); errors name `where` and the key."""
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: expected a mapping")
        raw = dict(raw)
        sources_raw = raw.pop("sources", [])
        if not isinstance(sources_raw, list):
            raise ConfigError(f"{where}.sources: expected a list of sources")
        sources: list[SourceConfig] = []
        for i, item in enumerate(sources_raw):
            key = f"{where}.sources.{i}"
            if not isinstance(item, dict) or not isinstance(item.get("kind"), str):
                raise ConfigError(f"{key}: expected a mapping with a `kind`")
            config_cls = source_class(item["kind"], key).Config
            try:
                sources.append(config_cls.model_validate(item))
            except ValidationError as exc:
                raise ConfigError(_describe(exc, key)) from exc
        try:
            return cls.model_validate({**raw, "sources": sources})
        except ValidationError as exc:
            raise ConfigError(_describe(exc, where)) from exc

    def to_raw(self) -> dict[str, Any]:
        """The YAML-ready mapping (`from_raw(to_raw())` gives an equal config)."""
        return self.model_dump(mode="json", serialize_as_any=True, exclude_none=True)


def load_index_config(project_dir: Path) -> IndexConfig:
    """The project's index config, from the `index:` section of its llmops.yaml.

    Cached while the file's bytes are unchanged: queries on the request path call it.
    """
    path = project_dir / CONFIG_FILE
    try:
        content = path.read_bytes()
    except OSError:
        content = None
    cached = _CACHE.get(path)
    if cached is not None and content is not None and cached[0] == content:
        return cached[1]
    cfg = IndexConfig.from_raw(load_config_file(project_dir).index, where=f"{path}: index")
    if content is not None:
        _CACHE[path] = (content, cfg)
    return cfg


_CACHE: dict[Path, tuple[bytes, IndexConfig]] = {}


def _describe(exc: ValidationError, prefix: str) -> str:
    """`prefix.key: problem` for each problem, joined by '; '."""
    parts = []
    for err in exc.errors():
        key = ".".join([prefix, *(str(p) for p in err["loc"])])
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        parts.append(f"{key}: {msg.removeprefix('Value error, ')}")
    return "; ".join(parts)
