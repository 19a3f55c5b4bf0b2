"""The MLflow Model Registry, the llmops way. The only package that uses the MLflow client.

Conventions (see ARCHITECTURE.md): names are `prompt.<name>`, `chain.<name>`,
`adapter.<name>`, `tabular.<name>`; identical content registers once; every
version carries its git commit; alias moves are compare-and-set and audited.

Modules, from the bottom: `refs` (references, version and audit records, tag
names), `runs` (the MLflow client, experiments and runs: `Tracking`, `RunLog`),
`client` (`Registry`: register, resolve, aliases, audit; `get_registry`),
`transfer` (a version copied from one profile's registry to another's: `copy_version`),
`cli` (`llmops registry ...`).

Example:
    >>> reg = get_registry()
    >>> reg.resolve("qa@production", kind="prompt").ref
    'prompt.qa/3'
"""

from __future__ import annotations

from llmops.registry.client import Registry, actor, get_registry
from llmops.registry.refs import (
    ANY,
    AUDIT_PREFIX,
    KINDS,
    TAG_ARCHIVED,
    TAG_ARCHIVED_REASON,
    TAG_COMMIT,
    TAG_DIRTY,
    TAG_HASH,
    AuditRecord,
    Ref,
    VersionInfo,
    parse_expect,
)
from llmops.registry.runs import RunLog, Tracking, git_commit

__all__ = [
    "ANY",
    "AUDIT_PREFIX",
    "KINDS",
    "TAG_ARCHIVED",
    "TAG_ARCHIVED_REASON",
    "TAG_COMMIT",
    "TAG_DIRTY",
    "TAG_HASH",
    "AuditRecord",
    "Ref",
    "Registry",
    "RunLog",
    "Tracking",
    "VersionInfo",
    "actor",
    "get_registry",
    "git_commit",
    "parse_expect",
]
