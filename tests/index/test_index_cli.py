"""`llmops index refresh|status|query` through the root Typer app (which translates errors)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from index_helpers import Project
from typer.testing import CliRunner

from llmops.cli import app
from llmops.config import get_settings
from llmops.index.lock import refresh_lock

pytestmark = pytest.mark.slow

runner = CliRunner()


def test_cli_on_a_small_project(project: Project) -> None:
    result = runner.invoke(app, ["index", "query", "yeast"])
    assert result.exit_code == 4
    assert "error: index 'test-docs' has no version yet; run: llmops index refresh" in result.output

    result = runner.invoke(app, ["index", "refresh", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "index 'test-docs': version 1 (new); documents +6" in result.output

    result = runner.invoke(app, ["index", "refresh", "--no-progress", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert (data["version"], data["created"], data["stats"]["embedded"]) == (1, False, 0)

    result = runner.invoke(app, ["index", "status"])
    assert result.exit_code == 0, result.output
    assert "version:    1" in result.output and "documents:  6" in result.output

    status = json.loads(runner.invoke(app, ["index", "status", "--json"]).output)
    assert (status["version"], status["documents"], status["mode"]) == (1, 6, "embedded")
    assert status["history"][0]["mlflow_run_id"]

    result = runner.invoke(app, ["index", "query", "kneading dough and yeast", "-k", "2"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "index version 1"
    assert lines[1].startswith("1. 0.") and "kb:baking#" in lines[1] and "Bread baking" in lines[1]

    hits = json.loads(runner.invoke(app, ["index", "query", "tomato", "-k", "3", "--json"]).output)
    assert len(hits) == 3
    assert set(hits[0]) == {"id", "score", "text", "metadata", "index_version"}

    with refresh_lock(get_settings().home_dir, "test-docs"):
        result = runner.invoke(app, ["index", "refresh", "--no-progress"])
    assert result.exit_code == 3
    assert "error: a refresh of index 'test-docs' is already running" in result.output


def test_python_docs_answer_the_with_statement(python_docs_home: Path) -> None:
    """The reference project's index (built once per session by the shared fixture)."""
    result = runner.invoke(app, ["index", "refresh", "--no-progress", "--json"])
    assert result.exit_code == 0, result.output
    refreshed = json.loads(result.output)
    assert refreshed["stats"]["embedded"] == 0 and refreshed["stats"]["documents"] > 70

    result = runner.invoke(app, ["index", "query", "how does the with statement work", "-k", "5",
                                 "--json"])
    assert result.exit_code == 0, result.output
    hits = json.loads(result.output)
    topics = [h["metadata"]["topic"] for h in hits]
    assert "with" in topics[:2], topics
    assert all('"with"' in h["text"] for h in hits[:3]), topics
    assert hits[0]["id"].startswith(f"python-docs:{topics[0]}#")
