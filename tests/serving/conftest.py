"""Fixtures of the gateway tests: a registry with chains, keys, and a gateway to talk to.

The registry (prompts pushed, chains logged and promoted) is built once per
session and copied into each test's LLMOPS_HOME, so a test may move aliases
or write the log without touching another test's.

Chains: `chain.chat` (fake LLM) with version 1 at production and version 2 at
staging; `chain.mockchat` (the openai backend, pointed at a MockOpenAI on
loopback, no retries) at production; `chain.mocktools`, the same passing tools
through, and `chain.localchat` (the local model, loaded on first use), at
production.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
import yaml

from llmops.config import reset_settings
from tests.mock_openai import MockOpenAI

REPO = Path(__file__).resolve().parents[2]
CHAT_PY = (REPO / "chains" / "chat.py").read_text()

ROUTES: dict[str, Any] = {
    "rate_limit": {"requests_per_s": 1000, "burst": 1000},
    "endpoints": {
        "chat": {
            "description": "fake chat, 90/10",
            "variants": [{"ref": "chain.chat@production", "weight": 90},
                         {"ref": "chain.chat@staging", "weight": 10}],
            "fallback": "production",
            "limits": {"max_tokens": 64, "timeout_s": 5, "max_concurrency": 64},
        },
        "shadowed": {
            "variants": [{"ref": "chain.chat@production", "weight": 100},
                         {"ref": "chain.chat@staging", "weight": 0}],
            "shadow": "staging",
        },
        "mock": {
            "description": "openai backend on the mock upstream",
            "variants": [{"ref": "chain.mockchat@production", "weight": 100}],
            "limits": {"max_tokens": 64, "timeout_s": 1.0, "max_concurrency": 8,
                       "max_concurrency_per_key": 8},
        },
        "flaky": {
            "variants": [{"ref": "chain.mockchat@production", "weight": 100, "name": "upstream"},
                         {"ref": "chain.chat@production", "weight": 0, "name": "backup"}],
            "fallback": "backup",
        },
    },
}


def write_chain(folder: Path, name: str, llm: dict[str, Any], description: str,
                **config: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.py").write_text(CHAT_PY)
    (folder / f"{name}.yaml").write_text(yaml.safe_dump({
        "name": name, "kind": "chat", "description": description,
        "prompt": "assistant@production", "llm": llm, **config}))
    return folder / f"{name}.py"


@dataclass
class Env:
    """What the session template holds."""

    home: Path
    mock: MockOpenAI


@pytest.fixture(scope="session")
def mock_upstream() -> Iterator[MockOpenAI]:
    with MockOpenAI() as server:
        yield server


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory, mlflow_template: Path,
             model_cache: Path, mock_upstream: MockOpenAI) -> Env:
    """A home with prompts and chains registered (built once)."""
    from llmops import chains, prompts

    root = tmp_path_factory.mktemp("gw-template")
    home = root / "home"
    home.mkdir()
    shutil.copy(mlflow_template, home / "mlflow.db")
    with pytest.MonkeyPatch.context() as mp:
        _point_at(mp, home, model_cache)
        prompts.push([REPO / "prompts" / "assistant.yaml"])
        prompts.promote("assistant", 1, "production")
        src = root / "chains"
        for version, desc in ((1, "test chat one"), (2, "test chat two")):
            log = chains.log(write_chain(src / f"v{version}", "chat", {"backend": "fake"}, desc))
            assert log.version == version
        chains.promote("chat", 1, "production")
        chains.promote("chat", 2, "staging")
        mock_llm = {"backend": "openai", "base_url": mock_upstream.base_url, "model": "mock",
                    "max_retries": 0, "timeout_s": 5}
        v = chains.log(write_chain(src / "mock", "mockchat", mock_llm, "chat on the mock")).version
        chains.promote("mockchat", v, "production")
        tools = chains.log(write_chain(src / "tools", "mocktools", mock_llm, "tools pass through",
                                       tools="passthrough")).version
        chains.promote("mocktools", tools, "production")
        local = chains.log(write_chain(src / "local", "localchat", {
            "backend": "local", "max_tokens": 32}, "chat on the local model")).version
        chains.promote("localchat", local, "production")
        for ref in ("chat/1", "chat/2", f"mockchat/{v}", f"mocktools/{tools}",
                    f"localchat/{local}"):
            chains.load(ref)  # fill the download cache that the copies share
        reset_settings()
    reset_settings()
    return Env(home, mock_upstream)


def _point_at(mp: pytest.MonkeyPatch, home: Path, model_cache: Path) -> None:
    mp.setenv("LLMOPS_HOME", str(home))
    mp.setenv("LLMOPS_MODEL_CACHE", str(model_cache))
    mp.setenv("LLMOPS_PROJECT_DIR", str(REPO))
    for var in ("LLMOPS_PROFILE", "LLMOPS_TRACKING_URI", "LLMOPS_REGISTRY_URI",
                "LLMOPS_STORE_URL", "LLMOPS_GATEWAY__REFRESH_INTERVAL_S"):
        mp.delenv(var, raising=False)
    reset_settings()


@pytest.fixture
def gw_home(template: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
            model_cache: Path) -> Iterator[Path]:
    """This test's own copy of the template home, settings pointed at it."""
    home = tmp_path / "home"
    shutil.copytree(template.home, home)
    _point_at(monkeypatch, home, model_cache)
    yield home
    reset_settings()


@pytest.fixture
def mock(template: Env) -> MockOpenAI:
    m = template.mock
    m.state.faults.clear()
    m.state.bodies.clear()
    m.state.calls = 0
    m.state.delay_s = 0.0
    return m


@pytest.fixture
def routes_file(tmp_path: Path) -> Path:
    path = tmp_path / "routes.yaml"
    path.write_text(yaml.safe_dump(ROUTES))
    return path


@pytest.fixture
def keys(gw_home: Path) -> dict[str, str]:
    """One key per role, and the names they carry."""
    from llmops.serving.keys import create_key
    from llmops.store import Store

    store = Store.open()
    try:
        return {role: create_key(store, name=f"{role}-1", role=role)[1]
                for role in ("client", "reviewer", "admin", "metrics")}
    finally:
        store.close()


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A gateway app under uvicorn in a thread, on loopback."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("gateway did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture
def make_app(gw_home: Path, routes_file: Path):  # type: ignore[no-untyped-def]
    """create_app on this test's home and routes (keyword arguments pass through)."""
    from llmops.serving.app import create_app

    def make(**kw: Any) -> Any:
        kw.setdefault("routes", routes_file)
        return create_app(**kw)

    return make


@pytest.fixture
def client(make_app, keys):  # type: ignore[no-untyped-def]
    """A TestClient (lifespan run) on the test routes."""
    from fastapi.testclient import TestClient

    with TestClient(make_app()) as c:
        yield c


def gateway_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a gateway subprocess on `home`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMOPS_")}
    env.update(LLMOPS_HOME=str(home), LLMOPS_PROJECT_DIR=str(REPO),
               LLMOPS_MODEL_CACHE=os.environ.get("LLMOPS_MODEL_CACHE", str(home / "models")),
               PYTHONPATH=str(REPO), **extra)
    return env
