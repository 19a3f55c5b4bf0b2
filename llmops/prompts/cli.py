"""`llmops prompts ...`: push, list, show, diff, promote."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

app = typer.Typer(help="Prompts: YAML in prompts/, versions in the registry.", no_args_is_help=True)


def _json(data: object) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


@app.command("push")
def push_cmd(
    paths: list[Path] = typer.Argument(None, help="prompt files or folders (default prompts/)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="print what would be registered; change nothing"),
) -> None:
    """Register the prompts whose content changed; unchanged ones keep their version."""
    from llmops.prompts.api import push

    results = push(paths or None, dry_run=dry_run)
    if as_json:
        _json([r.to_dict() for r in results])
        return
    for r in results:
        if not dry_run:
            state = "registered" if r.created else "unchanged,"
            typer.echo(f"{r.name}: {state} version {r.version}")
        elif r.created:
            typer.echo(f"{r.name}: would register version {r.version} "
                       f"(new content {r.content_hash[:12]}, {r.path})")
        else:
            typer.echo(f"{r.name}: unchanged, version {r.version} "
                       f"(content {r.content_hash[:12]} already registered)")
    if dry_run:
        typer.echo("dry run: nothing registered")


@app.command("list")
def list_cmd(as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """Registered prompts with their latest version and aliases."""
    from llmops.prompts.api import list_prompts

    rows = list_prompts()
    if as_json:
        _json(rows)
        return
    if not rows:
        typer.echo("no prompts registered; run: llmops prompts push")
    for r in rows:
        aliases = " ".join(f"{a}={v}" for a, v in sorted(r["aliases"].items())) or "-"
        typer.echo(f"{r['name']}  latest {r['latest']}  {aliases}")


@app.command("show")
def show_cmd(
    ref: str = typer.Argument(..., help="qa@staging, qa/3, qa, or a YAML file"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """One prompt version: messages, variables, parameters, aliases."""
    from llmops.prompts.api import load

    p = load(ref)
    data = {"ref": p.ref, "version": p.version, "aliases": list(p.aliases),
            **p.spec.model_dump(mode="json")}
    if as_json:
        _json(data)
        return
    typer.echo(f"{p.ref}  aliases: {', '.join(p.aliases) or '-'}")
    typer.echo(f"  {p.spec.description}")
    for m in p.messages:
        typer.echo(f"\n[{m['role']}]\n{m['content']}")
    typer.echo("\nvariables: " + ", ".join(
        f"{k}{'' if v.required else '?'}{' (untrusted)' if v.untrusted else ''}"
        for k, v in p.spec.variables.items()))
    typer.echo("parameters: " + json.dumps(p.parameters))


@app.command("diff")
def diff_cmd(
    ref_a: str = typer.Argument(..., help="first version, e.g. qa/1"),
    ref_b: str = typer.Argument(..., help="second version, e.g. qa@staging"),
) -> None:
    """Unified diff of two versions' messages, variables and parameters."""
    from llmops.prompts.api import diff

    text = diff(ref_a, ref_b)
    typer.echo(text if text else f"{ref_a} and {ref_b} are identical")


@app.command("promote")
def promote_cmd(
    name: str = typer.Argument(..., help="prompt name, e.g. qa"),
    version: int = typer.Option(..., "--version", "-v", help="version to promote"),
    to: str = typer.Option(..., "--to", help="staging or production"),
    expect: str = typer.Option(
        None, "--expect",
        help="version the alias points at now ('none' if unset); a mismatch changes nothing",
    ),
    reason: str = typer.Option("", "--reason", help="why (kept in the audit record)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="check and say; change nothing"),
) -> None:
    """Move an alias to a version, compare-and-set, with an audit record."""
    from llmops.prompts.api import promote
    from llmops.registry import parse_expect

    rec = promote(name, version, to, expect=parse_expect(expect), reason=reason,
                  dry_run=dry_run)
    echo_move(f"prompt.{name.removeprefix('prompt.')}@{to}", rec, dry_run)


def echo_move(target: str, rec: Any, dry_run: bool) -> None:
    """One line for an alias move (or the move a dry run would make)."""
    frm = "unset" if rec.from_version is None else rec.from_version
    typer.echo(("dry run: " if dry_run else "") + f"{target}: {frm} -> {rec.to_version}"
               + (" (would move; nothing changed)" if dry_run else ""))
