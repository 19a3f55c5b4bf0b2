"""Shared fixtures: every test runs against its own LLMOPS_HOME.

MLflow runs real, on SQLite. Creating its schema costs seconds, so one
migrated database is made per session and copied into each test's home.
The converted base model is cached once per session and shared.
"""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmops.config import Settings, get_settings, reset_settings

REPO = Path(__file__).resolve().parent.parent

# A chat chain on the fake backend, for tests that log or run one.
CHAT_YAML = """\
name: chat
kind: chat
description: A test chat chain.
prompt: assistant@staging
llm: {backend: fake, max_tokens: 40}
"""


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


KB_DOCS = {
    "tea": ("Brewing green tea", "Green tea is brewed with water at about 80 degrees Celsius "
            "for two to three minutes; boiling water makes it bitter."),
    "bikes": ("Bicycle chains", "Clean and oil a bicycle chain every few hundred kilometres; "
              "a dry chain wears the cassette and squeaks."),
    "owls": ("Owls at night", "Owls hunt at night. Their large eyes and soft feathers let them "
             "see in dim light and fly almost silently."),
}


def make_kb_project(root: Path, monkeypatch: pytest.MonkeyPatch, llm: str = "backend: fake",
                    k: int = 2) -> Path:
    """A project whose index is three jsonl documents (KB_DOCS), the reference chains and
    prompts, the RAG chain's LLM set to `llm`; indexed, pushed, prompt.qa at production."""
    import json

    import llmops.index as index
    import llmops.prompts as prompts

    (root / "data").mkdir(parents=True)
    with (root / "data" / "kb.jsonl").open("w") as f:
        for doc_id, (title, text) in KB_DOCS.items():
            f.write(json.dumps({"id": doc_id, "text": text, "metadata": {"title": title}}) + "\n")
    (root / "llmops.yaml").write_text(
        "index:\n  collection: small-kb\n  chunk_size: 400\n  chunk_overlap: 40\n"
        "  sources:\n    - kind: jsonl\n      name: kb\n      path: data/kb.jsonl\n"
    )
    shutil.copytree(REPO / "chains", root / "chains")
    shutil.copytree(REPO / "prompts", root / "prompts")
    config = (REPO / "chains" / "rag_qa.yaml").read_text()
    if "backend: local" not in llm:  # a local-only option
        config = "".join(line for line in config.splitlines(keepends=True)
                         if "repetition_penalty" not in line)
    (root / "chains" / "rag_qa.yaml").write_text(
        config.replace("backend: local", llm).replace("k: 3", f"k: {k}"))
    monkeypatch.setenv("LLMOPS_PROJECT_DIR", str(root))
    reset_settings()
    index.refresh(progress=False)
    prompts.push()
    prompts.promote("qa", 1, "production")
    return root


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


# -- PostgreSQL --------------------------------------------------------------------
PG_URL = os.environ.get("LLMOPS_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@functools.cache
def pg_available() -> bool:
    """Whether the test PostgreSQL answers (asked once per session)."""
    import sqlalchemy as sa

    engine = sa.create_engine(PG_URL, connect_args={"connect_timeout": 2})
    try:
        with engine.connect():
            return True
    except Exception:
        return False
    finally:
        engine.dispose()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A store URL on a fresh PostgreSQL schema of its own, dropped after the test.

    Skips the test when no server answers at `LLMOPS_TEST_PG_URL` (default 127.0.0.1:5432).
    Mark such tests `@pytest.mark.postgres`.
    """
    import uuid

    import sqlalchemy as sa

    if not pg_available():
        pytest.skip(f"no PostgreSQL at {sa.make_url(PG_URL).render_as_string(hide_password=True)}")
    schema = f"llmops_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty store URL: a SQLite file, or a PostgreSQL schema of its own."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'requests.db'}"
    return str(request.getfixturevalue("pg_url"))


# -- servers of the scale path (tests/servers.py) ------------------------------------
@pytest.fixture
def chroma_server(tmp_path: Path) -> Iterator[int]:
    """A real `chroma run` server on loopback; yields its port."""
    from tests.servers import chroma

    with chroma(tmp_path / "chroma-server") as port:
        yield port


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`mlflow server` on a PostgreSQL database of its own, artifacts served over HTTP;
    yields its URL. Skips without PostgreSQL; mark its tests `postgres`."""
    from tests.servers import mlflow_on_postgres

    if not pg_available():
        pytest.skip("no PostgreSQL at 127.0.0.1:5432")
    with mlflow_on_postgres(PG_URL, tmp_path_factory.mktemp("mlflow-server")) as url:
        yield url

