"""Two variants of one endpoint on two LoRA adapters of one base, through the real HTTP
gateway: each answers with its own adapter, the log names the adapter version, and the
gateway process holds one base model."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from llmops.lineage import Lineage
from llmops.llm.adapters import clear_batchers, loaded_bases
from llmops.serving.router import assign
from llmops.store import Store
from tests.llm.test_adapters import SEEDS, make_adapter, register_adapter
from tests.serving.conftest import ROUTES, Server, auth, write_chain

pytestmark = pytest.mark.slow

LIMIT = 16  # new tokens per answer
Q = "What is the capital of France?"
WEIGHTS = [("production", 50), ("staging", 50)]


@pytest.fixture
def tuned(gw_home: Path, tmp_path: Path) -> Iterator[dict[str, int]]:
    """chain.tuned: version on adapter.a at production, version on adapter.b at staging."""
    from llmops import chains

    clear_batchers()
    versions = {}
    for kind, seed in SEEDS.items():
        adapter = make_adapter(tmp_path / "adapters" / kind, seed)
        register_adapter(f"adapter.{kind}", adapter, tmp_path / "registered")
        llm = {"backend": "local", "adapter": f"adapter.{kind}@production", "max_tokens": LIMIT}
        code = write_chain(tmp_path / "chains" / kind, "tuned", llm, f"chat on adapter {kind}")
        versions[kind] = chains.log(code).version
    chains.promote("tuned", versions["a"], "production")
    chains.promote("tuned", versions["b"], "staging")
    yield versions
    clear_batchers()


def test_two_adapter_variants_answer_through_the_gateway_from_one_base(
        tuned: dict[str, int], make_app: Any, keys: dict[str, str], tmp_path: Path) -> None:
    from llmops import chains

    expected = {kind: chains.load(f"chain.tuned/{v}").invoke(Q, max_tokens=LIMIT).answer
                for kind, v in tuned.items()}
    assert expected["a"] != expected["b"]
    routes = tmp_path / "tuned.yaml"
    routes.write_text(yaml.safe_dump({**ROUTES, "endpoints": {"tuned": {
        "variants": [{"ref": f"chain.tuned@{name}", "weight": w} for name, w in WEIGHTS],
        "limits": {"max_tokens": LIMIT, "timeout_s": 120, "max_concurrency": 8}}}}))
    users = {assign("tuned", f"user-{i}", WEIGHTS): f"user-{i}" for i in range(50)}
    calls = [("production", "a"), ("staging", "b")] * 2
    app = make_app(routes=routes)

    with Server(app) as s:
        def ask(call: tuple[str, str]) -> httpx.Response:
            return httpx.post(f"{s.url}/v1/chat/completions", headers=auth(keys["client"]),
                              timeout=120, json={"model": "tuned", "user": users[call[0]],
                                                 "max_tokens": LIMIT,
                                                 "messages": [{"role": "user", "content": Q}]})

        with ThreadPoolExecutor(len(calls)) as pool:
            responses = list(pool.map(ask, calls))
        gw = app.state.gateway
        llms = [gw.cache.get(f"chain.tuned@{name}").chain.llm for name, _ in WEIGHTS]

    store = Store.open()
    for (variant, kind), r in zip(calls, responses, strict=True):
        assert r.status_code == 200, r.text
        assert r.headers["x-llmops-variant"] == variant
        assert r.json()["choices"][0]["message"]["content"] == expected[kind]
        row = store.get_request(r.json()["id"])
        assert row is not None and row["status"] == 200
        lineage = Lineage.from_dict(row["lineage"])
        assert (lineage.chain_version, lineage.adapter, lineage.adapter_version) == (
            tuned[kind], f"adapter.{kind}", 1)
        assert lineage.adapter_ref == f"adapter.{kind}/1"
    # One base model in the process: both variants' LLMs batch on it, each with its adapter.
    assert llms[0].base() is llms[1].base()
    assert loaded_bases() == [llms[0].base()]
    assert len(llms[0].base().adapters) == 2
    assert llms[0].adapter_name != llms[1].adapter_name
