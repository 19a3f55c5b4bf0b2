"""Fixtures of the index tests: a small project with a jsonl and a files source.

Everything is real: Chroma on disk (or a `chroma run` server on loopback),
the all-MiniLM-L6-v2 model from its package, MLflow on SQLite.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from index_helpers import INDEX_SECTION, KB, NOTES, Project, Snapshot, snapshot

from llmops.config import load_settings
from llmops.index import refresh


@pytest.fixture
def project(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    """The small project, settings pointed at it (and at the fresh `home`)."""
    proj = Project(tmp_path / "project")
    for doc_id, (title, text) in KB.items():
        proj.kb[doc_id] = {"id": doc_id, "text": text, "metadata": {"title": title}}
    proj._write()
    for name, text in NOTES.items():
        proj.note(name, text)
    monkeypatch.setenv("LLMOPS_PROJECT_DIR", str(proj.root))
    proj.write_config(INDEX_SECTION)
    return proj


@pytest.fixture
def clean_build(tmp_path: Path, mlflow_template: Path) -> Callable[[], Snapshot]:
    """Build the project's current sources from scratch in another home; its snapshot."""
    counter = iter(range(1000))

    def build() -> Snapshot:
        other = tmp_path / f"clean-home-{next(counter)}"
        other.mkdir()
        shutil.copy(mlflow_template, other / "mlflow.db")
        settings = load_settings(home=str(other))
        refresh(settings=settings, progress=False)
        return snapshot(settings)

    return build
