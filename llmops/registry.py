"""The MLflow Model Registry, the llmops way. The only module that uses the MLflow client.

Conventions (see ARCHITECTURE.md):
- names are `prompt.<name>`, `chain.<name>`, `adapter.<name>`, `tabular.<name>`;
- registering content whose hash is already registered returns that version;
- every version carries the git commit it was made from;
- alias moves are compare-and-set and leave an audit record, kept as tags of
  the registered model (`llmops.audit.NNNNNN`), so the audit travels with the
  registry whatever its backend.

Writes to one registered model are serialized by a file lock under
`LLMOPS_HOME/locks`: exact on one host (the embedded default); with a shared
MLflow server, run promotions from one place (CI), as the gates do.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from filelock import FileLock

from llmops.config import Settings, get_settings
from llmops.errors import AliasConflictError, NotFoundError, RegistryError

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient

TAG_HASH = "llmops.content_hash"
TAG_COMMIT = "llmops.git_commit"
TAG_DIRTY = "llmops.git_dirty"
TAG_ARCHIVED = "llmops.archived"
TAG_ARCHIVED_REASON = "llmops.archived_reason"
AUDIT_PREFIX = "llmops.audit."
KINDS = ("prompt", "chain", "adapter", "tabular")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_REF_RE = re.compile(r"^(?P<name>[^@/\s]+)(?:@(?P<alias>[A-Za-z][A-Za-z0-9_\-]*)|/(?P<version>\d+))?$")


class _Any:
    """Sentinel: move an alias whatever version it points at now."""

    def __repr__(self) -> str:
        return "ANY"


ANY: Any = _Any()


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


def git_commit(project_dir: Path) -> tuple[str, bool]:
    """(HEAD commit, whether the work tree has uncommitted changes); 'unknown' outside git."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=project_dir, capture_output=True, text=True,
            check=True, timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=project_dir,
            capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()
        return sha, bool(dirty)
    except (OSError, subprocess.SubprocessError):
        return "unknown", False


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


_thread_locks: dict[str, threading.RLock] = {}
_thread_locks_guard = threading.Lock()
_file_locks: dict[str, FileLock] = {}


class RunLog:
    """An MLflow run being written, through the client (thread-safe, no global state)."""

    def __init__(self, client: MlflowClient, run_id: str, experiment_id: str) -> None:
        self.client = client
        self.run_id = run_id
        self.experiment_id = experiment_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        for key, value in params.items():
            self.client.log_param(self.run_id, key, str(value)[:6000])

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        for key, value in metrics.items():
            self.client.log_metric(self.run_id, key, float(value), step=step)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        for key, value in tags.items():
            self.client.set_tag(self.run_id, key, str(value))

    def log_batch(
        self,
        *,
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> None:
        """Params, metrics and tags in one round trip (strings: params as given, else JSON)."""
        from mlflow.entities import Metric, Param, RunTag

        now = int(time.time() * 1000)
        self.client.log_batch(
            self.run_id,
            metrics=[Metric(k, float(v), now, 0) for k, v in (metrics or {}).items()],
            params=[Param(k, (v if isinstance(v, str) else json.dumps(v, sort_keys=True))[:6000])
                    for k, v in sorted((params or {}).items())],
            tags=[RunTag(k, str(v)) for k, v in (tags or {}).items()],
        )

    def log_dict(self, data: Any, artifact_file: str) -> None:
        self.client.log_dict(self.run_id, data, artifact_file)

    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, artifact_file)

    def log_table(self, df: pd.DataFrame, artifact_file: str) -> None:
        self.client.log_table(self.run_id, df, artifact_file)

    def log_artifacts(self, local_dir: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifacts(self.run_id, str(local_dir), artifact_path)

    def log_artifact(self, local_path: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(local_path), artifact_path)


class Registry:
    """Model-registry operations on the tracking and registry URIs of the settings."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self._client: MlflowClient | None = None

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            # MLflow draws a progress bar on stderr for every small download.
            os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
            from mlflow import MlflowClient

            self.settings.ensure_home()
            self._client = MlflowClient(
                tracking_uri=self.settings.mlflow_tracking_uri,
                registry_uri=self.settings.mlflow_registry_uri,
            )
        return self._client

    # -- locking -----------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """Serialize writes to one registered model across threads and processes (reentrant)."""
        path = str(self.settings.ensure_home() / "locks" / f"registry-{name}.lock")
        with _thread_locks_guard:
            tlock = _thread_locks.setdefault(name, threading.RLock())
            # One FileLock per file: it counts re-entries; a second instance on the
            # same file would wait for the first, in the same thread, forever.
            flock = _file_locks.setdefault(path, FileLock(path, timeout=120))
        with tlock, flock:
            yield

    # -- runs ----------------------------------------------------------------------
    def experiment_id(self, area: str) -> str:
        """The experiment `<prefix>/<area>`, created on first use."""
        from mlflow.exceptions import MlflowException

        name = f"{self.settings.experiment_prefix}/{area}"
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            return str(exp.experiment_id)
        location = f"{self.settings.artifact_root}/{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}"
        try:
            return str(self.client.create_experiment(name, artifact_location=location))
        except MlflowException:  # another thread or process created it first
            exp = self.client.get_experiment_by_name(name)
            if exp is None:
                raise
            return str(exp.experiment_id)

    @contextlib.contextmanager
    def run(
        self, area: str, run_name: str, *, tags: Mapping[str, Any] | None = None
    ) -> Iterator[RunLog]:
        """An MLflow run in experiment `<prefix>/<area>`; FAILED if the block raises."""
        exp_id = self.experiment_id(area)
        sha, dirty = git_commit(self.settings.project_dir)
        all_tags = {"mlflow.source.git.commit": sha, TAG_DIRTY: str(dirty).lower()}
        all_tags.update({k: str(v) for k, v in (tags or {}).items()})
        run = self.client.create_run(exp_id, run_name=run_name, tags=all_tags)
        log = RunLog(self.client, run.info.run_id, exp_id)
        try:
            yield log
        except BaseException:
            self.client.set_terminated(run.info.run_id, "FAILED")
            raise
        self.client.set_terminated(run.info.run_id, "FINISHED")

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

        kind, _, short = name.partition(".")
        if not _NAME_RE.match(name) or kind not in KINDS or not short:
            raise RegistryError(
                f"bad registered model name {name!r}: expected <kind>.<name> with kind one of "
                f"{', '.join(KINDS)}"
            )
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
    ) -> AuditRecord:
        """Point `alias` at `version`, if it now points at `expect` (None: unset).

        A mismatch raises AliasConflictError and changes nothing.
        """
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_\-]*", alias) or alias == "latest":
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
            self.client.set_registered_model_alias(name, alias, str(version))
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

    def archive(self, name: str, version: int, reason: str) -> AuditRecord:
        """Tag a version `archived` with a reason (it stays readable, aliases refuse it)."""
        with self.lock(name):
            self.get(name, version)
            self.set_tags(name, version, {TAG_ARCHIVED: "true", TAG_ARCHIVED_REASON: reason})
            return self._audit(name, "archive", None, version, version, reason, None)

    def _audit(
        self, name: str, action: str, alias: str | None, frm: int | None, to: int | None,
        reason: str, who: str | None,
    ) -> AuditRecord:
        seq = max((r.seq for r in self.history(name)), default=0) + 1
        record = AuditRecord(
            seq=seq, action=action, alias=alias, from_version=frm, to_version=to,
            actor=who or actor(), at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            reason=reason[:2000],
        )
        self.client.set_registered_model_tag(
            name, f"{AUDIT_PREFIX}{seq:06d}", json.dumps(record.to_dict())
        )
        return record

    def history(self, name: str) -> list[AuditRecord]:
        """Every alias move and archive of `name`, oldest first."""
        tags = self._registered(name).tags or {}
        records = []
        for key, value in tags.items():
            if key.startswith(AUDIT_PREFIX):
                d = json.loads(value)
                records.append(
                    AuditRecord(
                        seq=d["seq"], action=d["action"], alias=d["alias"],
                        from_version=d["from"], to_version=d["to"], actor=d["actor"],
                        at=d["at"], reason=d["reason"],
                    )
                )
        return sorted(records, key=lambda r: r.seq)


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
