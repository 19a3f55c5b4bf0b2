"""Shared fixtures: every test runs against its own LLMOPS_HOME.

MLflow runs real, on SQLite. Creating its schema costs seconds, so one
migrated database is made per session and copied into each test's home.
The converted base model is cached once per session and shared.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmops.config import Settings, get_settings, reset_settings

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One converted-model cache for the whole session (conversion is slow)."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty, fully migrated MLflow SQLite database."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    uri = f"sqlite:///{path}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.search_experiments()
    client.search_registered_models()
    return path


@pytest.fixture
def home(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    model_cache: Path,
    mlflow_template: Path,
) -> Iterator[Path]:
    """A fresh LLMOPS_HOME with an empty registry, settings pointed at it."""
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(mlflow_template, home / "mlflow.db")
    monkeypatch.setenv("LLMOPS_HOME", str(home))
    monkeypatch.setenv("LLMOPS_MODEL_CACHE", str(model_cache))
    monkeypatch.setenv("LLMOPS_PROJECT_DIR", str(REPO))
    for var in ("LLMOPS_PROFILE", "LLMOPS_TRACKING_URI", "LLMOPS_REGISTRY_URI"):
        monkeypatch.delenv(var, raising=False)
    reset_settings()
    yield home
    reset_settings()


@pytest.fixture
def settings(home: Path) -> Settings:
    return get_settings()


@pytest.fixture
def prompt_dir(tmp_path: Path) -> Path:
    """A copy of two reference prompts (qa, summarize) that a test may edit."""
    folder = tmp_path / "prompts"
    folder.mkdir()
    for name in ("qa.yaml", "summarize.yaml"):
        shutil.copy(REPO / "prompts" / name, folder / name)
    return folder


@pytest.fixture(scope="session")
def python_docs_index(
    tmp_path_factory: pytest.TempPathFactory, mlflow_template: Path, model_cache: Path
) -> Path:
    """A home with the reference index (the Python docs topics) built once per session."""
    from llmops.config import load_settings
    from llmops.index import refresh

    built = tmp_path_factory.mktemp("python-docs-home")
    shutil.copy(mlflow_template, built / "mlflow.db")
    settings = load_settings(home=str(built), project_dir=REPO, model_cache=str(model_cache))
    refresh(settings=settings, progress=False)
    return built


@pytest.fixture
def python_docs_home(home: Path, python_docs_index: Path) -> Path:
    """The test's fresh home, holding a copy of the built reference index."""
    for folder in ("chroma", "index"):
        shutil.copytree(python_docs_index / folder, home / folder)
    reset_settings()
    return home
