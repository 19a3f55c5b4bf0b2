"""The gateway step of `make demo` in its smoke mode: requests and votes through it, exit 0."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmops.serving.demo import gateway_demo
from llmops.store import Store


def test_smoke_demo_sends_chat_and_feedback_and_exits_0(
    gw_home: Path, routes_file: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    assert gateway_demo(smoke=True, routes=routes_file, endpoint="chat") == 0
    out = capsys.readouterr().out
    assert "client key:   llmops-" in out and "curl -s http://127.0.0.1:" in out
    assert out.count("   Q: ") == 3 and "3 answers logged, 3 votes recorded" in out
    store = Store.open()
    assert len(store.list_feedback()) == 3 and store.count_requests() == 3
