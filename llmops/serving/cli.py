"""CLI sub-apps of the gateway: `llmops serve`, `llmops keys ...`, `llmops feedback ...`.

Mounted by `llmops/cli.py`:
    app.add_typer(serve_app, name="serve")
    app.add_typer(keys_app, name="keys")
    app.add_typer(feedback_app, name="feedback")
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from llmops.store import Store

serve_app = typer.Typer(help="Run the gateway.", invoke_without_command=True)
keys_app = typer.Typer(help="API keys of the gateway: create, list, revoke.", no_args_is_help=True)
feedback_app = typer.Typer(help="Reviewer feedback in the request log.", no_args_is_help=True)
app = serve_app  # the name the mounting code looks for


@feedback_app.callback()
def _feedback() -> None:
    """Reviewer feedback in the request log."""  # a group even with one command


@serve_app.callback()
def serve(
    host: str = typer.Option(None, "--host", help="bind address (default: settings gateway.host)"),
    port: int = typer.Option(None, "--port", help="port (default: settings gateway.port)"),
    routes: Path = typer.Option(None, "--routes", help="routes file (default serving/routes.yaml)"),
    no_log: bool = typer.Option(
        False, "--no-request-log", hidden=True,
        help="do not log requests (only to measure what logging costs)"),
    access_log: bool = typer.Option(False, "--access-log", help="uvicorn's access log"),
    drain_s: float = typer.Option(
        25.0, "--drain", help="shutdown budget from SIGTERM, seconds: requests in flight, "
        "shadows and the log's last commits finish within it"),
    threads: int = typer.Option(
        16, "--threads", help="threads for the blocking steps of chains (retrieval, a local "
        "model); a remote LLM is awaited and holds none"),
    workers: int = typer.Option(
        1, "--workers", min=1, max=64, help="gateway processes on the one port (uvicorn's "
        "supervisor restarts one that dies); set gateway.redis_url so that rate limits "
        "and per-key caps hold across them"),
) -> None:
    """Serve the endpoints of routes.yaml on OpenAI's API until SIGINT/SIGTERM."""
    import uvicorn

    from llmops.config import get_settings
    from llmops.errors import ConfigError
    from llmops.serving.app import create_app
    from llmops.serving.gateway import GatewayOptions
    from llmops.serving.keys import create_key
    from llmops.store import Store

    settings = get_settings()
    if settings.gateway.dev_key and settings.profile != "dev":
        raise ConfigError(f"gateway.dev_key is for the dev profile only, not {settings.profile}: "
                          "make keys with `llmops keys create`")
    settings.ensure_home()
    store = Store.open(settings.store_url)
    if settings.gateway.dev_key:
        _, secret = create_key(store, name=f"dev-{_stamp()}", role="admin")
        typer.echo(f"dev admin key (shown once): {secret}")
    elif not [k for k in store.list_keys() if k.revoked_at is None]:
        typer.echo("no API keys yet: every request will get 401; "
                   "make one with `llmops keys create --role client --name NAME`", err=True)
    host = host or settings.gateway.host
    port = port or settings.gateway.port
    if workers > 1:
        store.close()
        _serve_workers(settings, host, port, workers, routes=routes, no_log=no_log,
                       access_log=access_log, drain_s=drain_s, threads=threads)
        return
    app = create_app(settings=settings, routes=routes, store=store,
                     options=GatewayOptions(log_requests=not no_log, drain_s=drain_s,
                                             threads=threads, freeze_gc=True))
    gw = app.state.gateway

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: object) -> None:
            if gw.exit_requested is None:
                gw.exit_requested = time.monotonic()  # the shutdown budget counts from here
            super().handle_exit(sig, frame)  # type: ignore[arg-type]

    typer.echo(f"llmops gateway on http://{host}:{port}/v1 (profile {settings.profile})")
    # requests in flight get two thirds of the budget; shadows and the log the rest
    config = uvicorn.Config(app, host=host, port=port, log_level="info", access_log=access_log,
                            timeout_graceful_shutdown=max(1, int(drain_s * 2 / 3)),
                            loop="auto", http="auto")
    Server(config).run()


def _serve_workers(settings: Any, host: str, port: int, workers: int, *, routes: Path | None,
                   no_log: bool, access_log: bool, drain_s: float, threads: int) -> None:
    """`workers` gateway processes under uvicorn's supervisor, sharing one socket; each
    builds its own gateway (`app.worker_app`) from what this process passes in the
    environment (settings' profile and project, and the serve options)."""
    import os

    import uvicorn

    from llmops.serving.app import WORKER_OPTIONS

    if settings.gateway.redis_url is None:
        typer.echo(f"{workers} workers without gateway.redis_url: rate limits and per-key "
                   "caps hold per process (each worker allows the full limit)", err=True)
    os.environ.update({
        "LLMOPS_PROFILE": settings.profile, "LLMOPS_PROJECT_DIR": str(settings.project_dir),
        WORKER_OPTIONS: json.dumps({"routes": str(routes) if routes else None,
                                    "log_requests": not no_log, "drain_s": drain_s,
                                    "threads": threads})})
    typer.echo(f"llmops gateway on http://{host}:{port}/v1 (profile {settings.profile}, "
               f"{workers} workers)")
    uvicorn.run("llmops.serving.app:worker_app", factory=True, host=host, port=port,
                workers=workers, log_level="info", access_log=access_log,
                timeout_graceful_shutdown=max(1, int(drain_s * 2 / 3)))


def _stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S")


def _store() -> Store:
    from llmops.store import Store

    return Store.open()


@keys_app.command("create")
def keys_create(
    role: str = typer.Option(
        ..., "--role", help="client (chat), reviewer (feedback), metrics (/metrics), admin"),
    name: str = typer.Option(..., "--name", help="who holds it; a reviewer's votes carry it"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Make a key and print it once (only its hash is kept)."""
    from llmops.serving.keys import create_key

    store = _store()
    try:
        record, secret = create_key(store, name=name, role=role)
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps({"id": record.id, "name": name, "role": role, "key": secret}))
        return
    typer.echo(f"key {record.id} for {name} ({role}); shown once, keep it safe:")
    typer.echo(secret)


@keys_app.command("list")
def keys_list(as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """Keys by id, name and role (never the keys themselves)."""
    store = _store()
    try:
        keys = store.list_keys()
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps([k.__dict__ for k in keys]))
        return
    for k in keys:
        state = "revoked" if k.revoked_at else "live"
        typer.echo(f"{k.id}  {k.role:8}  {k.name}  {state}")


@keys_app.command("revoke")
def keys_revoke(key_id: str = typer.Argument(..., help="the key's id (llmops keys list)")) -> None:
    """Revoke a key; gateways refuse it within their refresh interval."""
    from llmops.errors import LlmopsError

    store = _store()
    try:
        if not store.revoke_key(key_id):
            raise LlmopsError(f"no live key with id {key_id!r}")
    finally:
        store.close()
    typer.echo(f"key {key_id} revoked")


@feedback_app.command("export")
def feedback_export(
    fmt: str = typer.Option("jsonl", "--format", help="jsonl: one vote with its request a line"),
    output: Path = typer.Option(None, "--output", "-o", help="file (default: stdout)"),
    endpoint: str = typer.Option(None, "--endpoint", help="only this endpoint"),
    rating: str = typer.Option(None, "--rating", help="only up or only down"),
    since: str = typer.Option(None, "--since", help="only votes from this ISO time on"),
) -> None:
    """Every reviewer's current vote joined with its request, for evaluation and fine-tuning."""
    from llmops.errors import LlmopsError
    from llmops.store import to_jsonl

    if fmt != "jsonl":
        raise LlmopsError(f"--format must be jsonl, not {fmt!r}")
    start = None
    if since:
        try:
            start = datetime.fromisoformat(since).timestamp()  # no zone given: local time
        except ValueError:
            raise LlmopsError(f"--since {since!r}: not an ISO date or time") from None
    store = _store()
    out = output.open("w") if output else sys.stdout
    n = 0
    try:
        for line in to_jsonl(store.export_feedback(endpoint=endpoint, rating=rating, since=start)):
            out.write(line + "\n")
            n += 1
    finally:
        store.close()
        if output:
            out.close()
    if output:
        typer.echo(f"{n} votes written to {output}", err=True)
