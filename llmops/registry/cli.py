"""`llmops registry ...`: the versions, aliases and audit of any registered model."""

from __future__ import annotations

import json
from typing import Any

import typer

app = typer.Typer(help="Registered models: versions, aliases, audit.", no_args_is_help=True)


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


@app.command("history")
def history(
    name: str = typer.Argument(..., help="registered model, e.g. prompt.qa"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Every alias move and archive of a registered model: who, when, from, to, why."""
    from llmops.registry.client import get_registry

    records = get_registry().history(name)
    if as_json:
        _print_json([r.to_dict() for r in records])
        return
    if not records:
        typer.echo(f"{name}: no alias moves yet")
    for r in records:
        what = f"{r.alias}: {_v(r.from_version)} -> {_v(r.to_version)}" if r.alias else (
            f"archived version {r.to_version}")
        typer.echo(f"#{r.seq} {r.at} {r.actor} {r.action} {what}"
                   + (f"  ({r.reason})" if r.reason else ""))


@app.command("versions")
def versions(
    name: str = typer.Argument(..., help="registered model, e.g. chain.rag_qa"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """The versions of a registered model with their aliases and tags."""
    from llmops.registry.client import get_registry

    found = get_registry().list_versions(name)
    if as_json:
        _print_json([v.to_dict() for v in found])
        return
    for v in found:
        flags = ", ".join(v.aliases) + (" [archived]" if v.archived else "")
        typer.echo(f"{v.ref}  {v.created_at:%Y-%m-%d %H:%M}  {flags}")


@app.command("archive")
def archive(
    name: str = typer.Argument(..., help="registered model"),
    version: int = typer.Option(..., "--version", "-v", help="version to archive"),
    reason: str = typer.Option(..., "--reason", help="why (kept in the audit record)"),
) -> None:
    """Tag a version archived; aliases will refuse to point at it."""
    from llmops.registry.client import get_registry

    get_registry().archive(name, version, reason)
    typer.echo(f"{name}/{version} archived: {reason}")


def _v(version: int | None) -> str:
    return "unset" if version is None else str(version)
