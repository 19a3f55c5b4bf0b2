"""A refresh killed with SIGKILL at any point, then a normal refresh, equals a clean build.

The child fills the refresh's step hook (`llmops.index.job.step_hook`) and runs
the refresh: it pauses at the named step, then is killed.
"""

from __future__ import annotations

import signal
from collections.abc import Callable

import pytest
from index_helpers import KB, Project, Snapshot, assert_same_index, run_refresh_subprocess, snapshot

from llmops.index import current_version, job, query, refresh, status

pytestmark = pytest.mark.slow


def _change_everything(project: Project) -> None:
    """A change of every kind: edited text, new title, new doc, deleted doc and note."""
    project.put("baking", KB["baking"][1].replace("Bread dough", "Sourdough bread dough"), "Bread")
    project.put("gardening", KB["gardening"][1], "Tomatoes")
    project.put("knots", "A bowline makes a fixed loop at the end of a line. " * 12, "Knots")
    project.drop("sailing")
    project.note("bees.md", None)


@pytest.mark.parametrize(
    "point",
    ["dirty", "batch-2", "deleted", "state-committed", "committed"],
)
def test_sigkill_then_refresh_equals_clean_build(
    project: Project, clean_build: Callable[[], Snapshot], point: str
) -> None:
    refresh(progress=False)
    query("telescope", k=1)  # this process now holds a loaded view of version 1
    _change_everything(project)

    child = run_refresh_subprocess(point)
    try:
        if point == "deleted":
            # Old chunks deleted, new ones written, nothing committed: a reader that
            # loaded the collection before still finds the changed document, in its new text.
            hits = query("sourdough bread dough with yeast", k=3)
            assert hits[0].metadata["doc_id"] == "kb:baking"
            assert any("Sourdough" in h.text for h in hits if h.metadata["doc_id"] == "kb:baking")
            assert all(h.index_version == 1 for h in hits)
            assert status().refresh_running
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()

    assert not status().refresh_running  # the lock died with its holder
    result = refresh(progress=False)
    assert result.version == 2
    if point in ("state-committed", "committed"):
        assert not result.created  # the killed run had committed version 2 already
    else:
        assert result.created
        assert result.recovered == (point != "dirty")
    assert current_version() == 2
    assert_same_index(snapshot(), clean_build())
    assert query("bowline fixed loop", k=1)[0].index_version == 2
    history = status().history
    assert [h["version"] for h in history] == [2, 1]
    assert all(h["mlflow_run_id"] for h in history)  # a run the kill prevented is logged now


def test_the_step_hook_sees_each_step_in_order(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps: list[str] = []
    monkeypatch.setattr(job, "step_hook", steps.append)
    refresh(progress=False)
    assert [s for s in steps if not s.startswith("batch-")] == [
        "dirty", "written", "updated", "deleted", "state-committed", "committed"
    ]
    batches = [s for s in steps if s.startswith("batch-")]
    assert batches == [f"batch-{n}" for n in range(1, len(batches) + 1)] and len(batches) > 1
    steps.clear()
    refresh(progress=False)  # nothing changed: nothing marked dirty, nothing committed
    assert steps == ["written", "updated", "deleted"]
