"""The same refresh and queries against a real Chroma server (`chroma run`) on loopback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from index_helpers import KB, Project

from llmops.config import get_settings, reset_settings
from llmops.index import current_version, query, refresh, status

pytestmark = pytest.mark.slow


def test_server_mode(
    project: Project, chroma_server: int, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMOPS_VECTOR__MODE", "server")
    monkeypatch.setenv("LLMOPS_VECTOR__PORT", str(chroma_server))
    reset_settings()
    assert get_settings().vector.mode == "server"

    first = refresh(progress=False)
    assert (first.version, first.stats.documents) == (1, 6)
    assert query("kneading dough and yeast", k=1)[0].metadata["doc_id"] == "kb:baking"

    project.put("baking", KB["baking"][1] + " Let the loaf cool before slicing.", "Bread")
    second = refresh(progress=False)
    assert second.version == 2 and 1 <= second.stats.embedded <= 2
    assert refresh(progress=False).stats.embedded == 0

    # Another process, another client: sees version 2 through the server.
    out = subprocess.run(
        [sys.executable, "-m", "llmops.cli", "index", "query", "cool the loaf before slicing",
         "-k", "1", "--json"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    hit = json.loads(out)[0]
    assert (hit["metadata"]["doc_id"], hit["index_version"]) == ("kb:baking", 2)

    st = status()
    assert (st.mode, st.location) == ("server", f"http://127.0.0.1:{chroma_server}")
    assert (st.version, st.documents, st.chunks) == (2, 6, second.stats.chunks)
    assert current_version() == 2
    assert not (home / "chroma").exists()  # nothing went to the embedded store
