"""`llmops registry ...`: the versions, aliases and audit of any registered model."""

from __future__ import annotations

import json
from typing import Any

import typer

from llmops.errors import RegistryError
from llmops.registry.refs import parse_expect

app = typer.Typer(help="Registered models: versions, aliases, audit.", no_args_is_help=True)


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


@app.command("history")
def history(
    name: str = typer.Argument(..., help="registered model, e.g. prompt.qa"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Every alias move, archive and copy of a registered model: who, when, from, to, why."""
    from llmops.registry.client import get_registry

    records = get_registry().history(name)
    if as_json:
        _print_json([r.to_dict() for r in records])
        return
    if not records:
        typer.echo(f"{name}: no alias moves yet")
    for r in records:
        what = f"{r.alias}: {_v(r.from_version)} -> {_v(r.to_version)}" if r.alias else (
            f"archived version {r.to_version}" if r.action == "archive" else
            f"version {r.to_version}")
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
    dry_run: bool = typer.Option(False, "--dry-run", help="check and say; change nothing"),
) -> None:
    """Tag a version archived; aliases will refuse to point at it."""
    from llmops.registry.client import get_registry

    get_registry().archive(name, version, reason, dry_run=dry_run)
    typer.echo(f"dry run: {name}/{version} would be archived: {reason} (nothing changed)"
               if dry_run else f"{name}/{version} archived: {reason}")


@app.command("copy")
def copy(
    ref: str = typer.Argument(..., help="the version to copy: NAME@ALIAS or NAME/VERSION, "
                              "e.g. chain.rag_qa@staging"),
    from_profile: str = typer.Option(..., "--from-profile", help="profile whose registry holds it"),
    to_profile: str = typer.Option(..., "--to-profile", help="profile whose registry gets it"),
    alias: str = typer.Option(None, "--alias", help="then point this alias of the destination "
                              "at the copy (e.g. production)"),
    expect: str = typer.Option(None, "--expect", help="with --alias: the version it points at "
                               "now in the destination, or 'none' (unset); a mismatch copies "
                               "nothing"),
    reason: str = typer.Option("", "--reason", help="why (kept in the audit records)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="say what would happen; change nothing"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Copy a version, with the prompt and adapter versions it pins, from one profile's
    registry to another's; audited in both. The same content copies once."""
    from llmops.registry.transfer import copy_version, profile_settings

    if expect is not None and alias is None:
        raise RegistryError("--expect needs --alias (it is the alias's version now)")
    result = copy_version(
        ref, source=profile_settings(from_profile), dest=profile_settings(to_profile),
        alias=alias, expect=parse_expect(expect), reason=reason, dry_run=dry_run)
    if as_json:
        _print_json(result.to_dict())
        return
    for line in result.lines():
        typer.echo(("dry run: " if dry_run else "") + line)


def _v(version: int | None) -> str:
    return "unset" if version is None else str(version)
