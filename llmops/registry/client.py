"""The `Registry`: registered models, versions, aliases and their audit, on the MLflow client.

- registering content whose hash is already registered returns that version;
- every version carries the git commit it was made from;
- alias moves are compare-and-set and leave an audit record, kept as tags of
  the registered model (`llmops.audit.NNNNNN`), so the audit travels with the
  registry whatever its backend.

Writes to one registered model are serialized by a lock: a file lock under
`LLMOPS_HOME/locks` on one host (the embedded default), or, when the settings name a
PostgreSQL database (`lock_url`, or the registry's or the log's), an advisory lock
there, which holds across hosts (`llmops.locks`). After a move the alias is read back;
audit records have unique keys, so no record overwrites another.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import shutil
import socket
import tempfile
import threading
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from filelock import FileLock

from llmops.config import get_settings
from llmops.errors import AliasConflictError, NotFoundError, RegistryError
from llmops.registry.refs import (
    ALIAS_RE,
    ANY,
    AUDIT_PREFIX,
    TAG_ARCHIVED,
    TAG_ARCHIVED_REASON,
    TAG_COMMIT,
    TAG_DIRTY,
    TAG_HASH,
    AuditRecord,
    Ref,
    VersionInfo,
    check_name,
)
from llmops.registry.runs import RunLog, Tracking, git_commit

_thread_locks: dict[str, threading.RLock] = {}
_thread_locks_guard = threading.Lock()
_file_locks: dict[str, FileLock] = {}
_held = threading.local()  # per thread: registered model name -> re-entry depth


def actor() -> str:
    """Who is acting: LLMOPS_ACTOR, else user@host."""
    env = os.environ.get("LLMOPS_ACTOR")
    if env:
        return env
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


class Registry(Tracking):
    """Model-registry operations on the tracking and registry URIs of the settings."""

    # -- locking -----------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """Serialize writes to one registered model across threads and processes
        (reentrant): a PostgreSQL advisory lock when the settings name a PostgreSQL
        database (`llmops.locks`: across hosts), else a file lock under HOME (one host)."""
        with _thread_locks_guard:
            tlock = _thread_locks.setdefault(name, threading.RLock())
        with tlock:
            depth = _held.__dict__.setdefault(name, 0)
            if depth:  # this thread holds it already
                _held.__dict__[name] = depth + 1
                try:
                    yield
                finally:
                    _held.__dict__[name] -= 1
                return
            _held.__dict__[name] = 1
            try:
                with self._process_lock(name):
                    yield
            finally:
                _held.__dict__[name] = 0

    def _process_lock(self, name: str) -> contextlib.AbstractContextManager[Any]:
        url = self.settings.lock_database_url
        if url is not None:
            from llmops.locks import advisory_lock

            return advisory_lock(url, f"registry:{name}", timeout=120)
        path = str(self.settings.ensure_home() / "locks" / f"registry-{name}.lock")
        with _thread_locks_guard:
            # One FileLock per file: it counts re-entries; a second instance on the
            # same file would wait for the first, in the same thread, forever.
            flock = _file_locks.setdefault(path, FileLock(path, timeout=120))
        return flock

    # -- versions ------------------------------------------------------------------
    def _info(self, mv: Any, aliases: Mapping[str, int] | None = None) -> VersionInfo:
        version = int(mv.version)
        if aliases is None:
            aliases = self._aliases(mv.name)
        return VersionInfo(
            name=mv.name,
            version=version,
            aliases=tuple(sorted(a for a, v in aliases.items() if v == version)),
            tags=dict(mv.tags or {}),
            description=mv.description or "",
            created_at=datetime.fromtimestamp(mv.creation_timestamp / 1000, tz=timezone.utc),
            source=mv.source,
            run_id=mv.run_id,
        )

    def _aliases(self, name: str) -> dict[str, int]:
        return {a: int(v) for a, v in self._registered(name).aliases.items()}

    def _registered(self, name: str) -> Any:
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_registered_model(name)
        except MlflowException as exc:
            if "RESOURCE_DOES_NOT_EXIST" in str(exc.error_code):
                raise NotFoundError(f"no registered model named {name!r}") from None
            raise RegistryError(f"registry: {exc.message}") from exc

    def exists(self, name: str) -> bool:
        try:
            self._registered(name)
        except NotFoundError:
            return False
        return True

    def list_models(self, prefix: str = "") -> list[str]:
        """Names of registered models that start with `prefix`, sorted."""
        names = [m.name for m in self.client.search_registered_models(max_results=1000)]
        return sorted(n for n in names if n.startswith(prefix))

    def summaries(self, prefix: str) -> list[dict[str, Any]]:
        """Per registered model under `prefix`: versions, latest, aliases, archived versions."""
        out = []
        for name in self.list_models(prefix):
            vs = self.list_versions(name)
            out.append({
                "name": name,
                "versions": len(vs),
                "latest": vs[-1].version if vs else None,
                "aliases": {a: v.version for v in vs for a in v.aliases},
                "archived": [v.version for v in vs if v.archived],
                "description": vs[-1].description if vs else "",
            })
        return out

    def list_versions(self, name: str) -> list[VersionInfo]:
        """All versions of a model, oldest first, each with its aliases and tags."""
        aliases = self._aliases(name)
        mvs = self.client.search_model_versions(f"name='{name}'", max_results=10000)
        return sorted((self._info(mv, aliases) for mv in mvs), key=lambda v: v.version)

    def get(self, name: str, version: int) -> VersionInfo:
        from mlflow.exceptions import MlflowException

        try:
            mv = self.client.get_model_version(name, str(version))
        except MlflowException:
            self._registered(name)  # raises if the model itself is missing
            raise NotFoundError(f"{name} has no version {version}") from None
        return self._info(mv)

    def resolve(self, ref: str | Ref, *, kind: str | None = None) -> VersionInfo:
        """The version a reference names: `name@alias`, `name/3` or `name` (latest)."""
        r = ref if isinstance(ref, Ref) else Ref.parse(ref, kind=kind)
        if r.version is not None:
            return self.get(r.name, r.version)
        aliases = self._aliases(r.name)
        if r.alias:
            if r.alias not in aliases:
                known = ", ".join(f"{a}->{v}" for a, v in sorted(aliases.items())) or "none"
                raise NotFoundError(f"{r.name} has no alias {r.alias!r} (aliases: {known})")
            return self.get(r.name, aliases[r.alias])
        versions = self.list_versions(r.name)
        if not versions:
            raise NotFoundError(f"{r.name} has no versions")
        return versions[-1]

    def find_by_hash(self, name: str, content_hash: str) -> VersionInfo | None:
        """The version of `name` registered with this content hash, if any."""
        if not self.exists(name):
            return None
        mvs = self.client.search_model_versions(
            f"name='{name}' and tag.`{TAG_HASH}`='{content_hash}'"
        )
        if not mvs:
            return None
        return self._info(min(mvs, key=lambda mv: int(mv.version)))

    def register(
        self,
        name: str,
        model_dir: Path,
        *,
        content_hash: str,
        run: RunLog,
        tags: Mapping[str, Any] | None = None,
        description: str = "",
    ) -> tuple[VersionInfo, bool]:
        """Register the model folder as a new version of `name`; (version, created).

        Identical content (same hash) returns the existing version and logs nothing.
        """
        from mlflow.exceptions import MlflowException

        check_name(name)
        with self.lock(name):
            existing = self.find_by_hash(name, content_hash)
            if existing is not None:
                return existing, False
            try:
                self.client.create_registered_model(name)
            except MlflowException as exc:
                if "RESOURCE_ALREADY_EXISTS" not in str(exc.error_code):
                    raise RegistryError(f"registry: {exc.message}") from exc
            run.log_artifacts(model_dir, "model")
            sha, dirty = git_commit(self.settings.project_dir)
            all_tags = {TAG_HASH: content_hash, TAG_COMMIT: sha, TAG_DIRTY: str(dirty).lower()}
            all_tags.update({k: str(v) for k, v in (tags or {}).items()})
            mv = self.client.create_model_version(
                name, f"runs:/{run.run_id}/model", run_id=run.run_id, tags=all_tags,
                description=description,
            )
            return self._info(mv), True

    def download(self, name: str, version: int, dst: Path | None = None) -> Path:
        """The version's model folder on local disk (cached under HOME/cache)."""
        info = self.get(name, version)
        dst = dst or self.settings.home_dir / "cache" / name / str(version)
        if (dst / ".complete").exists():
            return dst
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=dst.parent))
        from mlflow.artifacts import download_artifacts

        if not info.run_id:
            raise RegistryError(f"{info.ref} has no run; it was not registered by llmops")
        local = download_artifacts(
            run_id=info.run_id, artifact_path="model", dst_path=str(tmp),
            tracking_uri=self.settings.mlflow_tracking_uri,
        )
        (Path(local) / ".complete").touch()
        with contextlib.suppress(OSError):  # another process finished first
            os.replace(local, dst)
        shutil.rmtree(tmp, ignore_errors=True)
        return dst

    def set_tags(self, name: str, version: int, tags: Mapping[str, Any]) -> None:
        for key, value in tags.items():
            self.client.set_model_version_tag(name, str(version), key, str(value))

    def set_description(self, name: str, version: int, text: str) -> None:
        self.client.update_model_version(name, str(version), description=text)

    # -- aliases and audit ------------------------------------------------------
    def move_alias(
        self,
        name: str,
        alias: str,
        version: int,
        *,
        expect: int | Any | None = ANY,
        reason: str = "",
        who: str | None = None,
        dry_run: bool = False,
    ) -> AuditRecord:
        """Point `alias` at `version`, if it now points at `expect` (None: unset).

        A mismatch raises AliasConflictError and changes nothing. `dry_run`: every check,
        then the record the move would leave (`seq` 0), and nothing changed.
        """
        if not ALIAS_RE.fullmatch(alias) or alias == "latest":
            raise RegistryError(f"bad alias {alias!r}: letters, digits, '_' and '-'; not 'latest'")
        with self.lock(name):
            target = self.get(name, version)
            if target.archived:
                raise RegistryError(
                    f"{name}/{version} is archived "
                    f"({target.tags.get(TAG_ARCHIVED_REASON, 'no reason')}); not moving {alias}"
                )
            current = self._aliases(name).get(alias)
            if expect is not ANY and current != expect:
                raise AliasConflictError(
                    f"{name}@{alias} is {_v(current)}, not {_v(expect)} as expected; nothing changed"
                )
            if dry_run:
                return self._record(0, "move", alias, current, version, reason, who)
            self.client.set_registered_model_alias(name, alias, str(version))
            now = self._aliases(name).get(alias)
            if now != version:  # a writer that does not take our lock moved it meanwhile
                raise AliasConflictError(
                    f"{name}@{alias} is {_v(now)} right after it was set to {version}: "
                    "another writer moved it; check `llmops registry history`")
            return self._audit(name, "move", alias, current, version, reason, who)

    def delete_alias(
        self, name: str, alias: str, *, expect: int | Any | None = ANY, reason: str = ""
    ) -> AuditRecord:
        with self.lock(name):
            current = self._aliases(name).get(alias)
            if current is None:
                raise NotFoundError(f"{name} has no alias {alias!r}")
            if expect is not ANY and current != expect:
                raise AliasConflictError(
                    f"{name}@{alias} is {_v(current)}, not {_v(expect)} as expected; nothing changed"
                )
            self.client.delete_registered_model_alias(name, alias)
            return self._audit(name, "delete", alias, current, None, reason, None)

    def archive(self, name: str, version: int, reason: str, *,
                dry_run: bool = False) -> AuditRecord:
        """Tag a version `archived` with a reason (it stays readable, aliases refuse it);
        `dry_run`: the record it would leave, nothing changed."""
        with self.lock(name):
            self.get(name, version)
            if dry_run:
                return self._record(0, "archive", None, version, version, reason, None)
            self.set_tags(name, version, {TAG_ARCHIVED: "true", TAG_ARCHIVED_REASON: reason})
            return self._audit(name, "archive", None, version, version, reason, None)

    def note(self, name: str, action: str, reason: str, *, version: int | None = None,
             who: str | None = None) -> AuditRecord:
        """An audit record of something done to `name` that is not an alias move (a
        rollout's step, say): it goes to the same history as the moves."""
        with self.lock(name):
            return self._audit(name, action, None, version, version, reason, who)

    @staticmethod
    def _record(seq: int, action: str, alias: str | None, frm: int | None, to: int | None,
                reason: str, who: str | None) -> AuditRecord:
        return AuditRecord(
            seq=seq, action=action, alias=alias, from_version=frm, to_version=to,
            actor=who or actor(), at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            reason=reason[:2000])

    def _audit(
        self, name: str, action: str, alias: str | None, frm: int | None, to: int | None,
        reason: str, who: str | None,
    ) -> AuditRecord:
        seq = max((r.seq for r in self.history(name)), default=0) + 1
        record = self._record(seq, action, alias, frm, to, reason, who)
        # the key is unique even if two writers ever computed the same number (a writer
        # without our lock): both records are kept, side by side, not one overwritten
        self.client.set_registered_model_tag(
            name, f"{AUDIT_PREFIX}{seq:06d}.{uuid.uuid4().hex[:8]}", json.dumps(record.to_dict())
        )
        return record

    def history(self, name: str) -> list[AuditRecord]:
        """Every alias move and archive of `name`, oldest first."""
        tags = self._registered(name).tags or {}
        records = [AuditRecord.from_dict(json.loads(value))
                   for key, value in tags.items() if key.startswith(AUDIT_PREFIX)]
        return sorted(records, key=lambda r: (r.seq, r.at))


def _v(version: int | Any | None) -> str:
    return "unset" if version is None else f"version {version}"


@dataclass
class _Cache:
    registry: Registry | None = None
    key: tuple[str, str] | None = field(default=None)


_cache = _Cache()


def get_registry() -> Registry:
    """The process-wide Registry for the current settings."""
    s = get_settings()
    key = (s.mlflow_tracking_uri, s.mlflow_registry_uri)
    if _cache.registry is None or _cache.key != key:
        _cache.registry, _cache.key = Registry(s), key
    return _cache.registry
