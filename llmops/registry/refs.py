"""Names in the registry: references, versions and audit records, and the tags llmops sets.

Pure values, no MLflow: `Ref.parse("qa@staging", kind="prompt")` is
`prompt.qa@staging`; a `VersionInfo` is one registered version as the client
wrapper reads it; an `AuditRecord` is one alias move or archive.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from llmops.errors import RegistryError

TAG_HASH = "llmops.content_hash"
TAG_COMMIT = "llmops.git_commit"
TAG_DIRTY = "llmops.git_dirty"
TAG_ARCHIVED = "llmops.archived"
TAG_ARCHIVED_REASON = "llmops.archived_reason"
AUDIT_PREFIX = "llmops.audit."
KINDS = ("prompt", "chain", "adapter", "tabular")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
ALIAS_RE = re.compile(r"[A-Za-z][A-Za-z0-9_\-]*")  # whole alias: use fullmatch
_REF_RE = re.compile(r"^(?P<name>[^@/\s]+)(?:@(?P<alias>[A-Za-z][A-Za-z0-9_\-]*)|/(?P<version>\d+))?$")


class _Any:
    """Sentinel: move an alias whatever version it points at now."""

    def __repr__(self) -> str:
        return "ANY"


ANY: Any = _Any()


def parse_expect(text: str | None) -> Any:
    """`--expect` of an alias move: a version number, None for 'none' (unset), ANY when
    absent."""
    from llmops.errors import SpecError

    if text is None:
        return ANY
    value = text.strip()
    if value.lower() == "none":
        return None
    if value.isascii() and value.isdigit():  # not int() alone: "²".isdigit() is true too
        return int(value)
    raise SpecError(f"--expect must be a version number or 'none', not {text!r}")


@dataclass(frozen=True)
class VersionInfo:
    """One registered version, with its aliases and tags."""

    name: str
    version: int
    aliases: tuple[str, ...]
    tags: Mapping[str, str]
    description: str
    created_at: datetime
    source: str
    run_id: str | None

    @property
    def ref(self) -> str:
        return f"{self.name}/{self.version}"

    @property
    def archived(self) -> bool:
        return self.tags.get(TAG_ARCHIVED) == "true"

    @property
    def content_hash(self) -> str | None:
        return self.tags.get(TAG_HASH)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "aliases": list(self.aliases),
            "archived": self.archived,
            "description": self.description,
            "created_at": self.created_at.isoformat(),
            "run_id": self.run_id,
            "tags": dict(self.tags),
        }


@dataclass(frozen=True)
class AuditRecord:
    """One alias move (or archive) of a registered model."""

    seq: int
    action: str  # "move", "delete" or "archive"
    alias: str | None
    from_version: int | None
    to_version: int | None
    actor: str
    at: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "action": self.action,
            "alias": self.alias,
            "from": self.from_version,
            "to": self.to_version,
            "actor": self.actor,
            "at": self.at,
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AuditRecord:
        """A record from `to_dict()`'s mapping (as kept in a registered model's tag)."""
        return cls(
            seq=d["seq"], action=d["action"], alias=d["alias"], from_version=d["from"],
            to_version=d["to"], actor=d["actor"], at=d["at"], reason=d["reason"],
        )


@dataclass(frozen=True)
class Ref:
    """A parsed reference: `name@alias`, `name/3`, or `name` (the latest version)."""

    name: str
    alias: str | None = None
    version: int | None = None

    @classmethod
    def parse(cls, text: str, *, kind: str | None = None) -> Ref:
        """Parse a reference; with `kind`, a bare `qa@staging` means `<kind>.qa@staging`."""
        text = text.strip()
        if text.startswith("models:/"):
            text = text.removeprefix("models:/")
        m = _REF_RE.match(text)
        if not m:
            raise RegistryError(
                f"bad model reference {text!r}: expected NAME, NAME@ALIAS or NAME/VERSION"
            )
        name = m["name"]
        if kind and not name.startswith(f"{kind}."):
            name = f"{kind}.{name}"
        return cls(name, m["alias"], int(m["version"]) if m["version"] else None)

    def __str__(self) -> str:
        if self.alias:
            return f"{self.name}@{self.alias}"
        if self.version is not None:
            return f"{self.name}/{self.version}"
        return self.name


def check_name(name: str) -> None:
    """Raise RegistryError unless `name` is `<kind>.<name>` with a known kind."""
    kind, _, short = name.partition(".")
    if not NAME_RE.match(name) or kind not in KINDS or not short:
        raise RegistryError(
            f"bad registered model name {name!r}: expected <kind>.<name> with kind one of "
            f"{', '.join(KINDS)}"
        )
