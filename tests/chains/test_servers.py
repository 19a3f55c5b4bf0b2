"""The scale path's servers together: prompts, the index and a RAG chain on an MLflow
server (PostgreSQL backend, artifacts served over HTTP) and a Chroma server; a fresh
process with only the tracking URI loads the chain with `mlflow.pyfunc.load_model` and
answers through the Chroma server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import llmops.chains as chains
import llmops.index as index
from llmops.config import get_settings, reset_settings
from tests.conftest import make_kb_project

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def test_a_fresh_process_loads_the_chain_from_the_mlflow_server_and_answers_from_chroma(
        home: Path, tmp_path: Path, mlflow_server: str, chroma_server: int,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMOPS_TRACKING_URI", mlflow_server)
    monkeypatch.setenv("LLMOPS_VECTOR__MODE", "server")
    monkeypatch.setenv("LLMOPS_VECTOR__PORT", str(chroma_server))
    monkeypatch.setenv("LLMOPS_EXPERIMENT_PREFIX", f"servers-{tmp_path.name}")
    reset_settings()
    project = make_kb_project(tmp_path / "project", monkeypatch)
    assert get_settings().mlflow_tracking_uri == mlflow_server
    logged = chains.log(project / "chains" / "rag_qa.py")
    assert logged.lineage["index_collection"] == "small-kb"
    chains.promote("rag_qa", logged.version, "production")

    elsewhere = tmp_path / "elsewhere"  # no llmops.yaml, no home with state
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMOPS_", "MLFLOW_"))}
    env.update(MLFLOW_TRACKING_URI=mlflow_server, LLMOPS_HOME=str(tmp_path / "empty-home"),
               MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false")
    code = textwrap.dedent("""
        import json, mlflow, pandas as pd
        model = mlflow.pyfunc.load_model("models:/chain.rag_qa@production")
        out = model.predict(pd.DataFrame({"question": ["How do owls hunt?"]}))
        print(json.dumps(out[0]))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=elsewhere, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["sources"][0]["title"] == "Owls at night"
    assert out["lineage"]["index_collection"] == "small-kb"
    assert out["lineage"]["index_version"] == index.current_version()
    assert not (tmp_path / "empty-home" / "chroma").exists()  # it read the server
    assert not (home / "chroma").exists()
