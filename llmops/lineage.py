"""The lineage of one answer: one typed record from the chain to the log, trace and evaluation.

A chain fills it, the gateway adds what it knows (fallback), the request log
stores it as JSON, `llmops trace` prints it and evaluation keys its cache on
its index version. Values that cross many files travel as fields here, never
as keys of a dict.

Example:
    >>> lin = Lineage(chain="chain.rag_qa", chain_version=3, index_version=7)
    >>> Lineage.from_dict(lin.to_dict()) == lin
    True
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

# Keys of lineage dicts written before this record existed, and their field now.
_RENAMED = {"llm_backend": "backend"}


@dataclass(frozen=True)
class Lineage:
    """request -> chain version -> prompt version -> index version and chunks -> model, adapter."""

    chain: str | None = None  # registered name, chain.<name>
    chain_version: int | None = None
    chain_hash: str | None = None  # content hash of the logged chain
    prompt: str | None = None  # registered name, prompt.<name>
    prompt_version: int | None = None
    index_collection: str | None = None
    index_version: int | None = None  # the index version that served the retrieval
    chunk_ids: tuple[str, ...] = ()
    backend: str | None = None  # LLM backend: local, openai, fake, ...
    base_model: str | None = None  # hub reference or the remote model's name
    adapter: str | None = None  # registered name, adapter.<name>
    adapter_version: int | None = None
    prompt_tokens: int | None = None  # as the backend counted them
    completion_tokens: int | None = None
    latency_ms: float | None = None  # the chain's own time, input to final answer
    finish_reason: str | None = None  # stop | length
    fallback_from: str | None = None  # the gateway's variant that failed before this one
    extra: dict[str, Any] = field(default_factory=dict)  # kind-specific facts, kept as given

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["chunk_ids"] = list(self.chunk_ids)
        if not self.extra:
            out.pop("extra")
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Lineage:
        """A record from its dict (as stored), tolerant of older rows' keys and types."""
        if not data:
            return cls()
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {}
        extra: dict[str, Any] = dict(data.get("extra") or {})
        for key, value in data.items():
            name = _RENAMED.get(key, key)
            if name == "extra":
                continue
            if name in known:
                values.setdefault(name, value)
            else:
                extra[key] = value
        adapter = values.get("adapter")
        if isinstance(adapter, str) and values.get("adapter_version") is None and "/" in adapter:
            name, _, version = adapter.rpartition("/")  # older rows: "adapter.x/3"
            values["adapter"], values["adapter_version"] = name, _int(version)
        for name in ("chain_version", "prompt_version", "index_version", "adapter_version",
                     "prompt_tokens", "completion_tokens"):
            values[name] = _int(values.get(name))
        if values.get("latency_ms") is not None:
            values["latency_ms"] = float(values["latency_ms"])
        values["chunk_ids"] = tuple(str(c) for c in values.get("chunk_ids") or ())
        return cls(**values, extra=extra)

    def with_(self, **changes: Any) -> Lineage:
        """A copy with some fields changed."""
        return replace(self, **changes)

    @property
    def usage(self) -> tuple[int, int]:
        """(prompt tokens, completion tokens) as the backend counted them; 0 if it did not."""
        return self.prompt_tokens or 0, self.completion_tokens or 0

    @property
    def finish(self) -> str:
        """Why the answer ended: stop (its end, or a stop sequence), or length."""
        return self.finish_reason or "stop"

    @property
    def adapter_ref(self) -> str | None:
        """`adapter.<name>/<version>`, or None without an adapter."""
        if not self.adapter:
            return None
        return f"{self.adapter}/{self.adapter_version}" if self.adapter_version else self.adapter


def _int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
