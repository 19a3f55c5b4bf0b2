"""`llmops init [DIR]`: a new project, ready for its first day."""

from __future__ import annotations

from pathlib import Path

import typer


def init(
    folder: Path = typer.Argument(Path("."), help="project folder (made if missing)"),
    name: str = typer.Option(None, "--name", help="project name (default: the folder's name)"),
    backend: str = typer.Option("local", "--backend",
                                help="LLM of the chain: local (in process) or openai"),
    openai_url: str = typer.Option(None, "--openai-url",
                                   help="openai: the endpoint's /v1 URL "
                                        "(default https://api.openai.com/v1)"),
    model: str = typer.Option(None, "--model",
                              help="local: hub reference; openai: model name (default gpt-4o-mini)"),
    source: str = typer.Option("folder", "--source",
                               help="index source: folder (Markdown files in docs/) or jsonl"),
    ci: str = typer.Option("github", "--ci",
                           help="github (workflows calling ci/llmops-ci.sh) or script (alone)"),
    force: bool = typer.Option(False, "--force", help="overwrite files that exist"),
) -> None:
    """Scaffold a project: prompts, chains, eval, serving, finetune, docs, profiles, CI/CD."""
    from llmops.scaffold.project import InitOptions, default_name, write

    options = InitOptions.build(name=name or default_name(folder), backend=backend,
                                openai_url=openai_url, model=model, source=source, ci=ci)
    done = write(folder, options, force=force)
    replaced = set(done.overwritten)
    typer.echo(f"project {options.name} in {folder.resolve()}:")
    for rel in done.files:
        typer.echo(f"  {'overwrote' if rel in replaced else 'wrote':9} {rel}")
    typer.echo("next: cd into it, then `llmops index refresh` (see README.md)")
