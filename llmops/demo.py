"""The main job on the embedded defaults (`make demo`).

Refreshes the vector index over the Python documentation, pushes the
reference prompts and promotes the QA prompt through staging to production by
compare-and-set, logs the RAG chain with that prompt pinned, promotes it, and
answers a Python question with the local SmolLM2 model, with its sources and
lineage. Then it serves the gateway on the reference routes (both variants of
`rag-qa` live) and prints the URL, a client and a reviewer key and a curl
line; `--smoke` instead sends a few chats and votes through it and exits 0.
Every step is idempotent: a second run changes nothing it need not.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer

QUESTION = "How does the with statement work?"


@contextmanager
def _step(title: str) -> Iterator[None]:
    typer.secho(f"\n== {title}", bold=True)
    start = time.perf_counter()
    yield
    typer.echo(f"   ({time.perf_counter() - start:.1f} s)")


def _promote(promote: Any, versions: Any, name: str, version: int, kind: str) -> None:
    """staging, then production, each by compare-and-set against what is there now."""
    for stage in ("staging", "production"):
        current = {a: v.version for v in versions(name) for a in v.aliases}.get(stage)
        if current == version:
            typer.echo(f"   {kind}.{name}@{stage} is already version {version}")
            continue
        promote(name, version, stage, expect=current, reason="make demo")
        typer.echo(f"   {kind}.{name}@{stage}: {current or 'unset'} -> {version}")


def demo(
    question: str = typer.Option(QUESTION, "--question", "-q", help="what to ask"),
    max_tokens: int = typer.Option(120, "--max-tokens", help="cap on the answer, tokens"),
    serve: bool = typer.Option(True, "--serve/--no-serve", help="end by serving the gateway"),
    smoke: bool = typer.Option(
        False, "--smoke", help="instead of serving on, send a few chats and votes, then exit"
    ),
) -> None:
    """Run the main job end to end on the embedded defaults."""
    import llmops.chains as chains
    import llmops.index as index
    from llmops.config import get_settings
    from llmops.prompts import api as prompts
    from llmops.registry import get_registry

    settings = get_settings()
    project = settings.project_dir
    typer.echo(f"llmops demo: profile {settings.profile}, home {settings.home_dir}")
    typer.echo(f"tracking: {settings.mlflow_tracking_uri}")
    reg = get_registry()

    with _step("1. refresh the vector index (incremental; the first build embeds everything)"):
        typer.echo("   " + index.refresh().summary())

    with _step("2. push the reference prompts (only changed content makes a version)"):
        for r in prompts.push():
            typer.echo(f"   {r.name}: {'registered' if r.created else 'unchanged,'} "
                       f"version {r.version}")

    with _step("3. promote prompt.qa to staging, then production (compare-and-set)"):
        _promote(prompts.promote, prompts.versions, "qa", prompts.versions("qa")[-1].version,
                 "prompt")
        for rec in reg.history("prompt.qa")[-2:]:
            typer.echo(f"   audit #{rec.seq}: {rec.alias} {rec.from_version} -> "
                       f"{rec.to_version} by {rec.actor} at {rec.at}")

    with _step("4. log chain.rag_qa with the production prompt pinned, and promote it"):
        logged = chains.log(project / "chains" / "rag_qa.py")
        typer.echo(f"   {logged.name}: {'registered' if logged.created else 'unchanged,'} "
                   f"version {logged.version}")
        for key in ("prompt", "prompt_version", "index_collection", "index_version_at_log",
                    "base_model"):
            typer.echo(f"     {key}: {logged.lineage.get(key)}")
        _promote(chains.promote, lambda n: reg.list_versions(f"chain.{n}"), "rag_qa",
                 logged.version, "chain")

    with _step("5. ask chain.rag_qa@production (local SmolLM2)"):
        chain = chains.load("chain.rag_qa@production")
        result = chain.invoke(question, max_tokens=max_tokens)
        typer.echo(f"   Q: {question}")
        typer.secho(f"   A: {result.answer}", fg="green")
        typer.echo("   sources:")
        for s in result.sources:
            typer.echo(f"     {s['score']:.3f}  {s['title']}  ({s['id']})")
        lin = result.lineage
        typer.echo(f"   lineage: {lin['chain']}/{lin['chain_version']} <- "
                   f"{lin['prompt']}/{lin['prompt_version']}, index {lin['index_collection']} "
                   f"v{lin['index_version']}, {lin['base_model']}, "
                   f"{lin['completion_tokens']} tokens in {lin['latency_ms'] / 1000:.1f} s")
    with _step("6. promote prompt.assistant and log chain.chat (the gateway's chat endpoint)"):
        _promote(prompts.promote, prompts.versions, "assistant",
                 prompts.versions("assistant")[-1].version, "prompt")
        chat = chains.log(project / "chains" / "chat.py")
        typer.echo(f"   {chat.name}: {'registered' if chat.created else 'unchanged,'} "
                   f"version {chat.version}")
        _promote(chains.promote, lambda n: reg.list_versions(f"chain.{n}"), "chat",
                 chat.version, "chain")

    typer.echo("\nTry: llmops index query \"what is a generator\"; llmops prompts list; "
               "llmops registry history chain.rag_qa")
    if serve or smoke:
        from llmops.serving.demo import gateway_demo

        raise typer.Exit(gateway_demo(smoke=smoke))
