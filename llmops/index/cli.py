"""`llmops index ...`: refresh, status, query (errors are translated by the root CLI)."""

from __future__ import annotations

import json

import typer

app = typer.Typer(help="The vector index: refresh it from its sources, inspect it, query it.",
                  no_args_is_help=True)  # fmt: skip


@app.command()
def refresh(
    full: bool = typer.Option(False, "--full", help="re-embed and rewrite every chunk"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="progress bar"),
) -> None:
    """Bring the index up to date with its sources (a new version if anything changed)."""
    from dataclasses import asdict

    from llmops.index import refresh as do_refresh

    result = do_refresh(full=full, progress=progress)
    if as_json:
        typer.echo(json.dumps(asdict(result), indent=2))
    else:
        typer.echo(result.summary())


@app.command()
def status(as_json: bool = typer.Option(False, "--json", help="print the status as JSON")) -> None:
    """Current version, counts, last refresh."""
    from llmops.index import status as get_status

    st = get_status()
    if as_json:
        typer.echo(json.dumps(st.to_dict(), indent=2))
        return
    typer.echo(f"index:      {st.collection} ({st.mode}, {st.location})")
    if st.version is None:
        typer.echo("version:    none yet (run: llmops index refresh)")
    else:
        typer.echo(f"version:    {st.version} (refreshed {st.refreshed_at})")
    typer.echo(f"documents:  {st.documents}")
    typer.echo(f"chunks:     {st.chunks}")
    typer.echo(f"embeddings: {st.embedding_model}")
    if st.refresh_running:
        typer.echo("refresh:    running now")
    elif st.interrupted:
        typer.echo("refresh:    the last one was interrupted; the next refresh repairs it")
    if st.last_stats:
        s = st.last_stats
        typer.echo(
            f"last:       documents +{s['documents_added']} ~{s['documents_updated']} "
            f"-{s['documents_deleted']}, chunks +{s['chunks_added']} ~{s['chunks_updated']} "
            f"-{s['chunks_deleted']}, embedded {s['embedded']} in {s['duration_s']:.1f}s"
        )


@app.command()
def query(
    text: str = typer.Argument(..., help="the question"),
    k: int = typer.Option(5, "-k", "--k", min=1, help="how many chunks"),
    as_json: bool = typer.Option(False, "--json", help="print the hits as JSON"),
) -> None:
    """The chunks closest to TEXT: ids, scores, titles, snippets."""
    from llmops.index import query as do_query

    hits = do_query(text, k)
    if as_json:
        typer.echo(json.dumps([h.to_dict() for h in hits], indent=2))
        return
    if not hits:
        typer.echo("no hits")
        return
    typer.echo(f"index version {hits[0].index_version}")
    for rank, h in enumerate(hits, 1):
        snippet = " ".join(h.text.split())
        snippet = snippet[:157] + "..." if len(snippet) > 160 else snippet
        typer.echo(f"{rank}. {h.score:.3f}  {h.id}  {h.title}")
        typer.echo(f"   {snippet}")
