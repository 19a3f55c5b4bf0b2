"""The gateway step of `make demo`: keys, then the gateway serving; or a smoke run that
sends a few chat requests and votes through it and exits.

`llmops demo` calls `gateway_demo()` once the chains are logged and their aliases
set; `gateway_demo(smoke=True)` is the documented flag's path (and a test's).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import typer

QUESTIONS = (
    "What does the with statement do?",
    "How do I catch an exception in Python?",
    "What is a generator?",
)


def gateway_demo(
    *, smoke: bool = False, routes: Path | None = None, endpoint: str | None = None,
    host: str | None = None, port: int | None = None, questions: tuple[str, ...] = QUESTIONS,
) -> int:
    """Serve the reference endpoints (blocking); with `smoke`, exercise them and return 0."""
    import uvicorn

    from llmops.config import get_settings
    from llmops.serving.app import create_app
    from llmops.serving.keys import create_key
    from llmops.store import Store

    settings = get_settings()
    settings.ensure_home()
    store = Store.open(settings.store_url)
    client_key = create_key(store, name="demo-client", role="client")[1]
    reviewer_key = create_key(store, name="demo-reviewer", role="reviewer")[1]
    app = create_app(settings=settings, routes=routes, store=store)
    gw = app.state.gateway
    endpoint = endpoint or next(iter(gw.routes.endpoints))
    host = host or settings.gateway.host
    port = port or (_free_port() if smoke else settings.gateway.port)
    url = f"http://{host}:{port}"
    body = json.dumps({"model": endpoint, "messages": [{"role": "user", "content": questions[0]}]})
    typer.secho(f"\n== the gateway: {url}/v1", bold=True)
    typer.echo(f"   endpoints: {', '.join(gw.routes.endpoints)}")
    typer.echo(f"   client key:   {client_key}")
    typer.echo(f"   reviewer key: {reviewer_key}  (sign in at {url}/signin: /review, /dashboard)")
    typer.echo(f"   try: curl -s {url}/v1/chat/completions -H 'Authorization: Bearer "
               f"{client_key}' -H 'Content-Type: application/json' -d '{body}'")
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                            timeout_graceful_shutdown=30)
    server = uvicorn.Server(config)
    if not smoke:
        server.run()
        return 0
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        return _smoke(url, endpoint, client_key, reviewer_key, questions, server)
    finally:
        server.should_exit = True
        thread.join(timeout=60)


def _smoke(url: str, endpoint: str, client_key: str, reviewer_key: str,
           questions: tuple[str, ...], server: object) -> int:
    import httpx
    import openai

    deadline = time.monotonic() + 120
    while not getattr(server, "started", False):
        if time.monotonic() > deadline:
            typer.echo("   the gateway did not start", err=True)
            return 1
        time.sleep(0.05)
    ready = httpx.get(f"{url}/readyz", timeout=10)
    if ready.status_code != 200:
        typer.echo(f"   not ready: {ready.text}", err=True)
        return 1
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=client_key, max_retries=0, timeout=300)
    ids = []
    for i, q in enumerate(questions):
        raw = client.chat.completions.with_raw_response.create(
            model=endpoint, messages=[{"role": "user", "content": q}], user=f"demo-user-{i}")
        resp = raw.parse()
        sources = (resp.model_extra or {}).get("sources") or []
        typer.echo(f"   Q: {q}\n   A [{raw.headers.get('x-llmops-variant')} "
                   f"{raw.headers.get('x-llmops-chain')}, {len(sources)} sources]: "
                   f"{resp.choices[0].message.content}")
        ids.append(resp.id)
    auth = {"Authorization": f"Bearer {reviewer_key}"}
    for i, rid in enumerate(ids):
        r = httpx.post(f"{url}/v1/feedback", headers=auth, timeout=30, json={
            "request_id": rid, "rating": "up" if i % 2 == 0 else "down",
            "comment": "demo vote"})
        r.raise_for_status()
    votes = httpx.get(f"{url}/v1/feedback", headers=auth, timeout=30).json()["data"]
    typer.echo(f"   {len(ids)} answers logged, {len(votes)} votes recorded; "
               "export them with: llmops feedback export --format jsonl")
    return 0


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
