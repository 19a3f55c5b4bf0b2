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
