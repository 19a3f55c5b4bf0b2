"""The main job on the embedded defaults (`make demo`).

Pushes the reference prompts, promotes the QA prompt through staging to
production by compare-and-set, renders it and answers one Python question
with the local SmolLM2 model.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import typer

QUESTION = "What does the with statement do in Python?"


@contextmanager
def _step(title: str) -> Iterator[None]:
    typer.secho(f"\n== {title}", bold=True)
    start = time.perf_counter()
    yield
    typer.echo(f"   ({time.perf_counter() - start:.1f} s)")


def _context_for(question: str) -> str:
    """Documentation context for the question (the index takes this over later)."""
    import pydoc_data.topics

    text = pydoc_data.topics.topics["with"]
    return f"[The with statement]\n{text[:1200]}"


def demo(
    question: str = typer.Option(QUESTION, "--question", "-q", help="what to ask"),
    max_tokens: int = typer.Option(120, "--max-tokens", help="cap on the answer, tokens"),
) -> None:
    """Run the main job end to end on the embedded defaults."""
    from llmops.config import get_settings
    from llmops.hub import generate_chat, resolve_base_model
    from llmops.prompts import api as prompts
    from llmops.registry import get_registry

    settings = get_settings()
    typer.echo(f"llmops demo: profile {settings.profile}, home {settings.home_dir}")
    typer.echo(f"tracking: {settings.mlflow_tracking_uri}")
    reg = get_registry()

    with _step("1. push the reference prompts (only changed content makes a version)"):
        for r in prompts.push():
            typer.echo(f"   {r.name}: {'registered' if r.created else 'unchanged,'} "
                       f"version {r.version}")
        latest = prompts.versions("qa")[-1].version

    with _step("2. promote prompt.qa to staging, then production (compare-and-set)"):
        for stage in ("staging", "production"):
            aliases = {a: v.version for v in prompts.versions("qa") for a in v.aliases}
            current = aliases.get(stage)
            if current == latest:
                typer.echo(f"   prompt.qa@{stage} is already version {latest}")
                continue
            prompts.promote("qa", latest, stage, expect=current, reason="make demo")
            typer.echo(f"   prompt.qa@{stage}: {current or 'unset'} -> {latest}")
        for rec in reg.history("prompt.qa")[-3:]:
            typer.echo(f"   audit #{rec.seq}: {rec.alias} {rec.from_version} -> "
                       f"{rec.to_version} by {rec.actor} at {rec.at}")

    with _step("3. render prompt.qa@production"):
        qa = prompts.load("qa@production")
        messages = qa.render(context=_context_for(question), question=question)
        typer.echo(f"   {qa.ref}: {len(messages)} messages, "
                   f"{sum(len(m['content']) for m in messages)} characters")

    with _step("4. answer with the local base model"):
        path = resolve_base_model()
        typer.echo(f"   model: {settings.base_model} -> {path}")
        answer = generate_chat(
            messages, max_new_tokens=max_tokens, temperature=qa.spec.parameters.temperature
        )
        typer.echo(f"   Q: {question}")
        typer.secho(f"   A: {answer}", fg="green")
    typer.echo("\ndone. Try: llmops prompts list; llmops registry history prompt.qa")
