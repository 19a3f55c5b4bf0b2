"""The `llmops` command: `llmops <area> <verb>`, one Typer sub-app per area.

Errors of llmops are translated here once: one line on stderr, a non-zero exit.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import typer
from typer.core import TyperGroup

from llmops.errors import LlmopsError


class _TranslatingGroup(TyperGroup):
    """Turns an LlmopsError from any command into one line on stderr and its exit code."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except LlmopsError as exc:
            typer.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)


app = typer.Typer(
    name="llmops", help="The lifecycle of LLM prompts and chains.", no_args_is_help=True,
    pretty_exceptions_enable=False, cls=_TranslatingGroup,
)


@app.callback()
def _main(
    profile: str = typer.Option(
        None, "--profile", "-p", help="settings profile: dev, staging or prod",
        envvar="LLMOPS_PROFILE",
    ),
) -> None:
    from llmops.config import get_settings

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    get_settings(profile)  # validate the settings before any command runs


def emit_json(data: Any) -> None:
    """Print `data` as JSON for scripts (`--json`)."""
    typer.echo(json.dumps(data, indent=2, default=str))


# -- registry -------------------------------------------------------------------
registry_app = typer.Typer(help="Registered models: versions, aliases, audit.", no_args_is_help=True)
app.add_typer(registry_app, name="registry")


@registry_app.command("history")
def registry_history(
    name: str = typer.Argument(..., help="registered model, e.g. prompt.qa"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Every alias move and archive of a registered model: who, when, from, to, why."""
    from llmops.registry import get_registry

    records = get_registry().history(name)
    if as_json:
        emit_json([r.to_dict() for r in records])
        return
    if not records:
        typer.echo(f"{name}: no alias moves yet")
    for r in records:
        what = f"{r.alias}: {_v(r.from_version)} -> {_v(r.to_version)}" if r.alias else (
            f"archived version {r.to_version}")
        typer.echo(f"#{r.seq} {r.at} {r.actor} {r.action} {what}"
                   + (f"  ({r.reason})" if r.reason else ""))


@registry_app.command("versions")
def registry_versions(
    name: str = typer.Argument(..., help="registered model, e.g. chain.rag_qa"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """The versions of a registered model with their aliases and tags."""
    from llmops.registry import get_registry

    versions = get_registry().list_versions(name)
    if as_json:
        emit_json([v.to_dict() for v in versions])
        return
    for v in versions:
        flags = ", ".join(v.aliases) + (" [archived]" if v.archived else "")
        typer.echo(f"{v.ref}  {v.created_at:%Y-%m-%d %H:%M}  {flags}")


@registry_app.command("archive")
def registry_archive(
    name: str = typer.Argument(..., help="registered model"),
    version: int = typer.Option(..., "--version", "-v", help="version to archive"),
    reason: str = typer.Option(..., "--reason", help="why (kept in the audit record)"),
) -> None:
    """Tag a version archived; aliases will refuse to point at it."""
    from llmops.registry import get_registry

    get_registry().archive(name, version, reason)
    typer.echo(f"{name}/{version} archived: {reason}")


# -- trace ----------------------------------------------------------------------
@app.command("trace")
def trace(
    request_id: str = typer.Argument(..., help="the `id` of a gateway response"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """The lineage of one answer: endpoint, variant, chain, prompt, index, model, votes."""
    from llmops.store import Store

    store = Store.open()
    try:
        row = store.get_request(request_id)
        if row is None:
            raise LlmopsError(f"no request {request_id!r} in the request log")
        votes = store.feedback_history(request_id)
    finally:
        store.close()
    lin = dict(row.get("lineage") or {})
    chain = _version_facts(row.get("chain"), row.get("chain_version"))
    prompt = _version_facts(lin.get("prompt"), lin.get("prompt_version") or row.get("prompt_version"))
    r: dict[str, Any] = {k: row.get(k) for k in ("id", "created_at", "endpoint", "variant", "user",
                                            "key_id", "status", "error", "latency_ms",
                                            "prompt_tokens", "completion_tokens", "shadow_of")}
    idx: dict[str, Any] = {"collection": lin.get("index_collection"),
                  "version": lin.get("index_version") or row.get("index_version"),
                  "chunks": lin.get("chunk_ids") or [s.get("id") for s in row.get("sources") or []]}
    m = {"backend": lin.get("llm_backend"), "base_model": lin.get("base_model"),
         "adapter": lin.get("adapter")}
    out = {"request": r, "chain": chain, "prompt": prompt, "index": idx, "model": m,
           "feedback": votes}
    if as_json:
        emit_json(out)
        return
    from datetime import datetime

    at = datetime.fromtimestamp(float(r["created_at"])).isoformat(timespec="seconds")
    typer.echo(f"request {r['id']} at {at}: status {r['status']}"
               + (f" ({r['error']})" if r["error"] else "")
               + (f", {r['latency_ms']:.0f} ms" if r["latency_ms"] is not None else ""))
    typer.echo(f"  endpoint {r['endpoint']}, variant {r['variant']}, key {r['key_id']}, "
               f"user {r['user']}" + (f", shadow of {r['shadow_of']}" if r["shadow_of"] else ""))
    for label, facts in (("chain", chain), ("prompt", prompt)):
        if facts:
            extra = "".join(f", {k} {facts[k]}" for k in ("aliases", "gate", "archived")
                            if facts.get(k))
            typer.echo(f"  {label:6} {facts['ref']}{extra}")
    typer.echo(f"  index  {idx['collection']} v{idx['version']}: "
               f"{', '.join(map(str, idx['chunks'])) or 'no chunks'}")
    typer.echo(f"  model  {m['base_model']} ({m['backend']}), adapter {m['adapter'] or 'none'}")
    for v in votes:
        when = datetime.fromtimestamp(float(v["created_at"])).isoformat(timespec="seconds")
        typer.echo(f"  vote   {v['rating']} by {v['reviewer']} at {when}"
                   + (f": {v['comment']}" if v.get("comment") else ""))


def _version_facts(name: Any, version: Any) -> dict[str, Any] | None:
    """A registered version's ref, aliases, gate decision and archive state, from the registry."""
    if not name or version is None:
        return None
    from llmops.errors import NotFoundError
    from llmops.registry import get_registry

    ref = f"{name}/{version}"
    try:
        info = get_registry().get(str(name), int(version))
    except NotFoundError:
        return {"ref": ref, "missing": "not in this registry"}
    return {"ref": ref, "aliases": ", ".join(info.aliases), "gate": info.tags.get("gate.decision"),
            "archived": info.archived, "git_commit": info.tags.get("llmops.git_commit")}


def _v(version: int | None) -> str:
    return "unset" if version is None else str(version)


def _mount() -> None:
    from llmops.chains.cli import app as chains_app
    from llmops.demo import demo
    from llmops.index.cli import app as index_app
    from llmops.prompts.cli import app as prompts_app

    app.add_typer(prompts_app, name="prompts")
    app.add_typer(chains_app, name="chains")
    app.add_typer(index_app, name="index")

    from llmops.serving.cli import feedback_app, keys_app, serve

    app.command("serve")(serve)
    app.add_typer(keys_app, name="keys")
    app.add_typer(feedback_app, name="feedback")

    from llmops.eval.ab_cli import app as ab_app
    from llmops.eval.cli import app as eval_app
    from llmops.eval.cli import gate

    app.add_typer(eval_app, name="eval")
    app.command("gate")(gate)
    app.add_typer(ab_app, name="ab")
    app.command("demo")(demo)


_mount()


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
