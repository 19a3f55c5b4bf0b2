"""Copy a registered version from one profile's registry to another's: promotion across
environments whose registries differ (`llmops registry copy`).

The copy is deep: the version's model folder is downloaded from the source and logged
to a run of the destination, so the destination version works from plain
`mlflow.pyfunc.load_model` anywhere that reaches the destination's tracking server
alone. (`MlflowClient.copy_model_version` makes a version whose source is the other
version's URI: a copy that still lives in, and needs, the source registry.)

What travels: the model folder, the description and every version tag (content hash,
git commit, the `lineage.*` tags), less the tags that are one registry's state
(`archived`, an earlier copy's origin); plus `llmops.copied_from.*`: the source's
profile, registry URI (password hidden), name and version. A destination version with
the same content hash is the copy: copying again returns it and changes nothing.

A chain pins its prompt (and adapter) version by number in the source registry. Those
versions are copied first (the same way, deduplicated by content hash), and where one
lands under another number in the destination, the copied chain's pin (its MLmodel
config and its `lineage.*` tags) is rewritten to the destination's number; the
source's pins stay in `llmops.copied_from.pins`. A loaded chain reads its prompt from
its own `prompt.yaml` artifact, so the prompt copy is for lineage and for the
destination's own tools; an adapter is resolved in the registry when the chain loads,
so the adapter copy is what makes the chain load there at all.

Each copy leaves an audit record in both registries (`export` in the source, `import`
in the destination, read with `history`); an alias move in the destination goes
through `Registry.move_alias`: compare-and-set, audited.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from llmops.config import Settings, load_settings
from llmops.errors import AliasConflictError, NotFoundError, TransferError
from llmops.registry.client import Registry
from llmops.registry.refs import (
    ALIAS_RE,
    ANY,
    TAG_ARCHIVED,
    TAG_ARCHIVED_REASON,
    Ref,
    VersionInfo,
    check_name,
)

COPIED_FROM = "llmops.copied_from."
TAG_FROM_PROFILE = COPIED_FROM + "profile"
TAG_FROM_REGISTRY = COPIED_FROM + "registry_uri"
TAG_FROM_NAME = COPIED_FROM + "name"
TAG_FROM_VERSION = COPIED_FROM + "version"
TAG_FROM_PINS = COPIED_FROM + "pins"
# One registry's state about a version, not the version's: these never travel.
_LOCAL_TAGS = (TAG_ARCHIVED, TAG_ARCHIVED_REASON)


@dataclass(frozen=True)
class Copied:
    """One version copied (or found already copied, or, in a dry run, to be copied)."""

    source: str  # prompt.qa/3, in the source registry
    dest: str | None  # prompt.qa/1 in the destination; None: a new version (dry run)
    created: bool  # a new destination version was (or would be) made

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "dest": self.dest, "created": self.created}


@dataclass(frozen=True)
class CopyResult:
    """What `copy_version` did (or, with `dry_run`, would do)."""

    from_profile: str
    to_profile: str
    version: Copied
    pins: tuple[Copied, ...] = ()
    alias: str | None = None
    alias_from: int | None = None  # where the alias pointed before
    alias_moved: bool = False  # moved (or, in a dry run, would move)
    dry_run: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"from_profile": self.from_profile, "to_profile": self.to_profile,
                **self.version.to_dict(), "pins": [p.to_dict() for p in self.pins],
                "alias": self.alias, "alias_from": self.alias_from,
                "alias_moved": self.alias_moved, "dry_run": self.dry_run}

    def lines(self) -> list[str]:
        """A human summary, one line per thing done."""
        copied, moves = ("would be copied", "would move") if self.dry_run else ("copied", "moved")
        out = []
        for c in (*self.pins, self.version):
            where = c.dest or "a new version"
            out.append(f"{c.source} ({self.from_profile}) {copied} to {self.to_profile} as {where}"
                       if c.created else
                       f"{c.source} ({self.from_profile}) is already in {self.to_profile} as {where}")
        if self.alias:
            target = self.version.dest or "the new version"
            frm = "unset" if self.alias_from is None else self.alias_from
            out.append(f"{self.to_profile} {self.alias}: {moves} {frm} -> {target}"
                       if self.alias_moved else f"{self.to_profile} {self.alias}: already {target}")
        return out


def profile_settings(profile: str) -> Settings:
    """The settings of a profile of the project's llmops.yaml (ConfigError if unknown)."""
    return load_settings(profile)


def copy_version(
    ref: str,
    *,
    source: Settings,
    dest: Settings,
    alias: str | None = None,
    expect: int | Any | None = ANY,
    reason: str = "",
    who: str | None = None,
    dry_run: bool = False,
) -> CopyResult:
    """Copy the version `ref` names (`chain.rag_qa@staging`, `prompt.qa/3`) from the
    registry of `source` to that of `dest`, with the versions it pins; then, with
    `alias`, point that alias of the destination at the copy if it now points at
    `expect` (None: unset; ANY: whatever). `dry_run`: check everything, change nothing.

    Example:
        >>> copy_version("chain.rag_qa@staging", source=profile_settings("staging"),
        ...              dest=profile_settings("prod"), alias="production", expect=4)
    """
    _check_distinct(source, dest)
    src, dst = Registry(source), Registry(dest)
    r = Ref.parse(ref)
    check_name(r.name)
    info = _copyable(source, src.resolve(r))
    if alias is not None and (not ALIAS_RE.fullmatch(alias) or alias == "latest"):
        raise TransferError(f"bad alias {alias!r}: letters, digits, '_' and '-'; not 'latest'")
    job = _Job(src, dst, source, dest, reason, who, dry_run)

    existing = dst.find_by_hash(info.name, _hash(info))
    current = _alias_now(dst, info.name, alias)
    if alias is not None:  # check the move first: a refused move copies nothing either
        target = existing.version if existing else None
        if existing is not None and existing.archived:
            raise TransferError(
                f"{info.ref} is in {dest.profile} already as {existing.ref}, which is archived "
                f"there ({existing.tags.get(TAG_ARCHIVED_REASON, 'no reason')}); not moving {alias}")
        if expect is not ANY and current != expect and (target is None or current != target):
            raise AliasConflictError(
                f"{info.name}@{alias} in {dest.profile} is {_v(current)}, not {_v(expect)} as "
                "expected; nothing copied")
    pins: list[Copied] = []
    if existing is not None:  # copied before (or the same content registered there)
        copied = Copied(info.ref, existing.ref, False)
    else:
        pinned = _pins(src, info)
        pins = [job.copy(pin) for pin in pinned]
        renumbered = {p.source: p.dest for p in pins if p.dest is not None and p.dest != p.source}
        copied = job.copy(info, renumbered=renumbered, pins=[p.ref for p in pinned])

    moved = False
    if alias is not None and (copied.dest is None or current != Ref.parse(copied.dest).version):
        moved = True
        if not dry_run:
            assert copied.dest is not None
            dst.move_alias(info.name, alias, _version(copied.dest), expect=expect, who=who,
                           reason=reason or f"copied from {source.profile} {info.ref}")
    return CopyResult(source.profile, dest.profile, copied, tuple(pins), alias, current, moved,
                      dry_run)


@dataclass
class _Job:
    """The two registries of one copy and what every copy in it records."""

    src: Registry
    dst: Registry
    source: Settings
    dest: Settings
    reason: str
    who: str | None
    dry_run: bool

    def copy(self, info: VersionInfo, *, renumbered: dict[str, str] | None = None,
             pins: list[str] | None = None) -> Copied:
        """Copy one version (its pins already copied); the existing copy if there is one."""
        content_hash = _hash(info)
        existing = self.dst.find_by_hash(info.name, content_hash)
        if existing is not None:
            return Copied(info.ref, existing.ref, False)
        if self.dry_run:
            return Copied(info.ref, None, True)
        tags = {k: v for k, v in info.tags.items()
                if k not in _LOCAL_TAGS and not k.startswith(COPIED_FROM)}
        tags |= {TAG_FROM_PROFILE: self.source.profile,
                 TAG_FROM_REGISTRY: redact(self.source.mlflow_registry_uri),
                 TAG_FROM_NAME: info.name, TAG_FROM_VERSION: str(info.version)}
        if pins:
            tags[TAG_FROM_PINS] = ",".join(pins)
        with tempfile.TemporaryDirectory(prefix="llmops-copy-") as tmp:
            model_dir = Path(tmp) / "model"
            shutil.copytree(self.src.download(info.name, info.version), model_dir,
                            ignore=shutil.ignore_patterns(".complete"))
            for old, new in (renumbered or {}).items():
                _repin(model_dir, tags, old, new)
            with self.dst.run("registry", f"import {info.ref} from {self.source.profile}",
                              tags={"llmops.kind": info.name.split(".", 1)[0],
                                    TAG_FROM_NAME: info.name,
                                    TAG_FROM_VERSION: str(info.version)}) as run:
                made, created = self.dst.register(info.name, model_dir, content_hash=content_hash,
                                                  run=run, tags=tags, description=info.description)
        if created:
            why = f": {self.reason}" if self.reason else ""
            self.src.note(info.name, "export", f"exported to {self.dest.profile} as {made.ref}{why}",
                          version=info.version, who=self.who)
            self.dst.note(info.name, "import", f"imported from {self.source.profile} {info.ref} "
                          f"({redact(self.source.mlflow_registry_uri)}){why}",
                          version=made.version, who=self.who)
        return Copied(info.ref, made.ref, created)


def _check_distinct(source: Settings, dest: Settings) -> None:
    a, b = _normal(source.mlflow_registry_uri), _normal(dest.mlflow_registry_uri)
    if a == b:
        raise TransferError(
            f"profiles {source.profile} and {dest.profile} use the same registry "
            f"({redact(source.mlflow_registry_uri)}): nothing to copy; move an alias there "
            "instead, or check LLMOPS_HOME, LLMOPS_TRACKING_URI and LLMOPS_REGISTRY_URI, "
            "which apply to every profile")


def _normal(uri: str) -> str:
    if uri.startswith("sqlite:///"):
        return "sqlite:///" + str(Path(uri.removeprefix("sqlite:///")).resolve())
    return uri.rstrip("/")


def redact(uri: str) -> str:
    """The URI with any password hidden (it goes into tags and messages)."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", uri)


def _copyable(source: Settings, info: VersionInfo) -> VersionInfo:
    """The version, if it may be copied: not archived, registered by llmops."""
    if info.archived:
        raise TransferError(
            f"{info.ref} is archived in {source.profile} "
            f"({info.tags.get(TAG_ARCHIVED_REASON, 'no reason')}); not copying it")
    if not info.content_hash:
        raise TransferError(f"{info.ref} in {source.profile} has no content hash tag; only "
                            "versions registered by llmops can be copied")
    if not info.run_id:
        raise TransferError(f"{info.ref} in {source.profile} has no run holding its files; "
                            "only versions registered by llmops can be copied")
    return info


def _hash(info: VersionInfo) -> str:
    assert info.content_hash is not None  # checked by _copyable
    return info.content_hash


def _pins(src: Registry, info: VersionInfo) -> list[VersionInfo]:
    """The versions a chain version pins by number (its prompt, its adapter)."""
    if not info.name.startswith("chain."):
        return []
    refs = []
    if info.tags.get("lineage.prompt") and info.tags.get("lineage.prompt_version"):
        refs.append(f"{info.tags['lineage.prompt']}/{info.tags['lineage.prompt_version']}")
    if info.tags.get("lineage.adapter", "none") != "none":
        refs.append(info.tags["lineage.adapter"])
    out = []
    for ref in refs:
        try:
            pinned = src.resolve(ref)
        except NotFoundError as exc:
            raise TransferError(f"{info.ref} pins {ref}, which its registry lacks: {exc}") from None
        try:
            out.append(_copyable(src.settings, pinned))
        except TransferError as exc:
            raise TransferError(f"{info.ref} pins {ref}: {exc}") from None
    return out


def _repin(model_dir: Path, tags: dict[str, str], old: str, new: str) -> None:
    """Point a chain's pin `old` (prompt.qa/3) at the destination's `new` (prompt.qa/1):
    in its MLmodel config (what runs) and its lineage tags (what is reported)."""
    mlmodel = model_dir / "MLmodel"
    data = yaml.safe_load(mlmodel.read_text())
    config = data["flavors"]["python_function"].get("config") or {}
    if config.get("prompt") == old:
        config["prompt"] = new
        tags["lineage.prompt_version"] = str(_version(new))
    llm = config.get("llm") or {}
    if llm.get("adapter") == old:
        llm["adapter"] = new
        tags["lineage.adapter"] = new
    mlmodel.write_text(yaml.safe_dump(data, sort_keys=False))


def _alias_now(dst: Registry, name: str, alias: str | None) -> int | None:
    """The version `alias` of `name` points at in the destination (None: unset)."""
    if alias is None or not dst.exists(name):
        return None
    return next((v.version for v in dst.list_versions(name) if alias in v.aliases), None)


def _version(ref: str) -> int:
    version = Ref.parse(ref).version
    assert version is not None
    return version


def _v(version: int | Any | None) -> str:
    return "unset" if version is None else f"version {version}"
