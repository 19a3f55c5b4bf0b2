"""`llmops chains ...`: log, run, predict, promote, list."""

from __future__ import annotations

import json
from pathlib import Path

import typer

app = typer.Typer(help="Chains: files in chains/, versions in the registry.", no_args_is_help=True)


def _json(data: object) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


@app.command("log")
def log_cmd(
    path: Path = typer.Argument(..., help="chain file, e.g. chains/rag_qa.py"),
    prompt: str = typer.Option(None, "--prompt", help="prompt reference to pin, e.g. qa@staging"),
    adapter: str = typer.Option(None, "--adapter",
                                help="adapter reference to pin, e.g. adapter.house_style@staging"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="print whether a new version would be registered; change nothing"),
) -> None:
    """Register chain.<name>, every alias resolved to an exact version."""
    from llmops.chains.api import log, preview

    r = (preview if dry_run else log)(path, prompt=prompt, adapter=adapter)
    if as_json:
        _json(r.to_dict())
        return
    if not dry_run:
        state = "registered" if r.created else "unchanged,"
        typer.echo(f"{r.name}: {state} version {r.version}")
    elif r.created:
        why = r.note or f"new content {r.content_hash[:12]}"
        typer.echo(f"{r.name}: would register version {r.version} ({why})")
    else:
        typer.echo(f"{r.name}: unchanged, version {r.version} "
                   f"(content {r.content_hash[:12]} already registered)")
    for k, v in r.lineage.items():
        typer.echo(f"  {k}: {v}")
    if dry_run:
        typer.echo("dry run: nothing registered")


@app.command("run")
def run_cmd(
    ref: str = typer.Argument(..., help="chain reference, e.g. chain.rag_qa@staging"),
    question: str = typer.Argument(..., help="the question"),
    max_tokens: int = typer.Option(None, "--max-tokens", help="cap on the answer, tokens"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Answer one question with a registered chain; show its sources and lineage."""
    from llmops.chains.api import load

    chain = load(ref)
    kwargs = {"max_tokens": max_tokens} if max_tokens else {}
    result = chain.invoke(question, **kwargs)
    if as_json:
        _json(result.to_dict())
        return
    typer.echo(result.answer)
    if result.sources:
        typer.echo("\nsources:")
        for s in result.sources:
            typer.echo(f"  {s['score']:.3f}  {s['title']}  ({s['id']})")
    lin = result.lineage
    typer.echo(f"\n{lin.chain}/{lin.chain_version}  prompt {lin.prompt}/{lin.prompt_version}  "
               f"index {lin.index_version}  {lin.latency_ms or 0:.0f} ms  "
               f"{lin.completion_tokens} tokens")


@app.command("predict")
def predict_cmd(
    ref: str = typer.Argument(..., help="chain reference, e.g. chain.rag_qa@production"),
    input_path: Path = typer.Option(..., "--input", "-i",
                                    help="JSONL, one object per row with 'question' or "
                                         "'messages' (other keys are kept)"),
    output: Path = typer.Option(..., "--output", "-o", help="JSONL of the answered rows"),
    engine: str = typer.Option("pandas", "--engine",
                               help="pandas (in process) or spark (mlflow spark_udf)"),
    contexts: bool = typer.Option(False, "--contexts", help="add the context blocks"),
) -> None:
    """Answer every row of a file with one chain version; a failing row gets `error`."""
    import pandas as pd

    from llmops.chains.batch import predict
    from llmops.errors import ChainError
    from llmops.jsonl import objects

    rows = [obj for _, _, obj in objects(input_path, ChainError)]
    if not rows:
        raise ChainError(f"{input_path}: no rows")
    out = predict(ref, pd.DataFrame(rows), engine=engine, contexts=contexts)  # type: ignore[arg-type]
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".partial")
    with tmp.open("w") as f:
        for rec in out.to_dict(orient="records"):
            f.write(json.dumps(rec, default=str) + "\n")
    tmp.replace(output)
    failed = int(out["error"].notna().sum())
    typer.echo(f"{len(out)} rows answered by {out['lineage'][0].get('chain')}/"
               f"{int(out['chain_version'][0])} ({engine}), {failed} failed -> {output}")
    if failed:
        raise typer.Exit(1)


@app.command("promote")
def promote_cmd(
    name: str = typer.Argument(..., help="chain name, e.g. rag_qa"),
    version: int = typer.Option(..., "--version", "-v", help="version to promote"),
    to: str = typer.Option(..., "--to", help="staging or production"),
    expect: str = typer.Option(None, "--expect", help="version the alias points at now, or 'none'"),
    reason: str = typer.Option("", "--reason", help="why (kept in the audit record)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="check and say; change nothing"),
) -> None:
    """Move an alias to a version, compare-and-set, with an audit record."""
    from llmops.chains.api import promote
    from llmops.prompts.cli import echo_move
    from llmops.registry import parse_expect

    rec = promote(name, version, to, expect=parse_expect(expect), reason=reason,
                  dry_run=dry_run)
    echo_move(f"chain.{name.removeprefix('chain.')}@{to}", rec, dry_run)


@app.command("list")
def list_cmd(as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """Registered chains with their latest version and aliases."""
    from llmops.registry import get_registry

    rows = [{k: s[k] for k in ("name", "latest", "aliases")}
            for s in get_registry().summaries("chain.")]
    if as_json:
        _json(rows)
        return
    if not rows:
        typer.echo("no chains registered; run: llmops chains log chains/rag_qa.py")
    for r in rows:
        aliases = " ".join(f"{a}={v}" for a, v in sorted(r["aliases"].items())) or "-"
        typer.echo(f"{r['name']}  latest {r['latest']}  {aliases}")
