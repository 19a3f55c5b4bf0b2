"""Helpers of the index tests: the small project, snapshots, a pausable refresh."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from llmops.config import Settings, get_settings, reset_settings
from llmops.index import load_index_config
from llmops.index.store import get_store

COLLECTION = "test-docs"

# Four short documents on unrelated subjects, each a few 200-character chunks.
KB: dict[str, tuple[str, str]] = {
    "astronomy": (
        "Telescopes",
        "A telescope gathers light from distant stars and galaxies. Refracting telescopes use "
        "lenses to bend light to a focus, while reflecting telescopes use curved mirrors. "
        "Astronomers observe faint galaxies with large mirrors placed on high, dry mountains. "
        "Radio telescopes collect long-wavelength radiation with huge metal dishes. Space "
        "telescopes avoid the blurring of the atmosphere entirely.",
    ),
    "baking": (
        "Bread baking",
        "Bread dough is flour, water, salt and yeast. Kneading develops gluten so the dough "
        "can trap the gas the yeast produces. A long, cool fermentation gives more flavour. "
        "Shape the loaf, let it proof until it springs back slowly when pressed, then bake "
        "it in a very hot oven with steam for a crisp crust.",
    ),
    "sailing": (
        "Sailing upwind",
        "A sailboat cannot sail straight into the wind; it tacks in a zigzag at about forty-"
        "five degrees to the wind. Trim the sails until the telltales stream evenly. The keel "
        "resists sideways drift and turns the push of the wind into forward motion. Reef the "
        "mainsail early when gusts build.",
    ),
    "gardening": (
        "Growing tomatoes",
        "Tomatoes need full sun, warm soil and steady watering. Plant seedlings deep, since "
        "roots grow from the buried stem. Stake or cage the plants and pinch out suckers for "
        "larger fruit. Uneven watering causes blossom-end rot; mulch keeps the soil moist.",
    ),
}
NOTES: dict[str, str] = {
    "bees.md": "# Beekeeping\n\nA honey bee colony has one queen, thousands of workers and a "
    "few drones. Inspect the hive on warm days and add a super when the brood box is full.",
    "chess.html": "<html><head><title>Chess openings</title></head><body><h1>Openings</h1>"
    "<p>Control the centre with pawns, develop knights before bishops, castle early.</p>"
    "<script>var x = 1;</script></body></html>",
}


class Project:
    """A throw-away llmops project whose sources the test edits."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.kb: dict[str, dict[str, Any]] = {}
        (root / "notes").mkdir(parents=True, exist_ok=True)

    def put(self, doc_id: str, text: str, title: str | None = None, **meta: Any) -> None:
        metadata = {"title": title or doc_id, **meta}
        self.kb[doc_id] = {"id": doc_id, "text": text, "metadata": metadata}
        self._write()

    def drop(self, doc_id: str) -> None:
        del self.kb[doc_id]
        self._write()

    def note(self, name: str, text: str | None) -> None:
        path = self.root / "notes" / name
        if text is None:
            path.unlink()
        else:
            path.write_text(text)

    def _write(self) -> None:
        lines = [json.dumps(row) for row in self.kb.values()]
        (self.root / "kb.jsonl").write_text("\n".join(lines) + "\n")

    def write_config(self, index: dict[str, Any]) -> None:
        (self.root / "llmops.yaml").write_text(yaml.safe_dump({"index": index}, sort_keys=False))
        reset_settings()


INDEX_SECTION: dict[str, Any] = {
    "collection": COLLECTION,
    "chunk_size": 200,
    "chunk_overlap": 20,
    "batch_size": 4,  # several batches even for a small change
    "sources": [
        {"kind": "jsonl", "name": "kb", "path": "kb.jsonl"},
        {"kind": "files", "name": "notes", "glob": "notes/*"},
    ],
}


Snapshot = dict[str, tuple[str, dict[str, Any], np.ndarray]]


def snapshot(settings: Settings | None = None) -> Snapshot:
    """Every record of the collection: id -> (text, metadata, embedding), read afresh."""
    settings = settings or get_settings()
    store = get_store(settings.vector)
    store.reopen()
    col = store.collection(load_index_config(settings.project_dir).collection)
    assert col is not None
    got = col.get(include=["documents", "metadatas", "embeddings"])
    assert got["documents"] is not None and got["metadatas"] is not None
    assert got["embeddings"] is not None
    return {
        cid: (doc, dict(meta or {}), np.asarray(emb))
        for cid, doc, meta, emb in zip(
            got["ids"], got["documents"], got["metadatas"], got["embeddings"], strict=True
        )
    }


def assert_same_index(actual: Snapshot, expected: Snapshot) -> None:
    """Same ids, texts and metadata; embeddings equal up to float noise of batching."""
    assert sorted(actual) == sorted(expected)
    for cid, (text, meta, emb) in expected.items():
        got_text, got_meta, got_emb = actual[cid]
        assert got_text == text, cid
        assert got_meta == meta, cid
        np.testing.assert_allclose(got_emb, emb, atol=1e-4, err_msg=cid)


# A child process that fills the refresh's step hook, then runs the refresh job: at
# the step named by argv[1] it says so on stderr and waits to be killed.
_PAUSED_REFRESH = """
import sys, time

from llmops.index import job

def pause(step):
    if step == sys.argv[1]:
        print(f"llmops-index-paused {step}", file=sys.stderr, flush=True)
        time.sleep(3600)

job.step_hook = pause
job.refresh(full=sys.argv[2] == "full", progress=False)
"""


def run_refresh_subprocess(
    pause_at: str, *, full: bool = False, timeout: float = 120
) -> subprocess.Popen[str]:
    """A refresh in a child process that stops at step `pause_at` (see llmops/index/job.py)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _PAUSED_REFRESH, pause_at, "full" if full else "incremental"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if line.startswith(f"llmops-index-paused {pause_at}"):
            return proc
        if time.monotonic() > deadline:
            break
    proc.kill()
    raise AssertionError(f"refresh never paused at {pause_at}: {''.join(seen)[-2000:]}")
