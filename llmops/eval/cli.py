"""`llmops eval ...` and `llmops gate`: offline evaluation and promotion gates."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import typer

app = typer.Typer(help="Evaluate chains (and prompts, through their chain) on golden datasets.",
                  no_args_is_help=True)
dataset_app = typer.Typer(help="Build evaluation datasets.", no_args_is_help=True)
app.add_typer(dataset_app, name="dataset")


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "NaN"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def resolve_target(ref: str) -> str:
    """A chain reference as is; a prompt reference becomes the chain version that pins it.

    The chain comes from the prompt's gate in eval/gates.yaml (its `chain:` file).
    """
    from llmops.eval.gates import evaluated_version, gate_spec, load_gates
    from llmops.registry import Ref, get_registry

    parsed = Ref.parse(ref)
    if not parsed.name.startswith("prompt."):
        return ref
    reg = get_registry()
    spec = gate_spec(parsed.name, load_gates())
    from llmops.config import get_settings

    chain = evaluated_version(reg, parsed.name, reg.resolve(ref), spec, get_settings())
    typer.echo(f"{ref} is evaluated through {chain.ref}", err=True)
    return chain.ref


@app.command("run")
def run(
    ref: str = typer.Argument(..., help="chain (chain.rag_qa@staging) or prompt (prompt.qa@staging)"),
    dataset: Path = typer.Option(..., "--dataset", "-d", help="JSONL golden dataset"),
    metrics: str = typer.Option(None, "--metrics", "-m",
                                help="comma-separated (default: all that need no judge, "
                                     "plus the judge's when eval.judge_base_url is set)"),
    judge: bool = typer.Option(None, "--judge/--no-judge",
                               help="with or without the judge metrics (default: if configured)"),
    concurrency: int = typer.Option(None, "--concurrency", "-c", min=1,
                                    help="items at once (default: eval.concurrency)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
    items: bool = typer.Option(False, "--items", help="print every item's scores"),
    engine: str = typer.Option("pandas", "--engine",
                               help="pandas (answer in process) or spark (mlflow spark_udf)"),
) -> None:
    """Run a registered chain over a dataset and score it; exit 1 if any score failed."""
    from llmops.eval.runner import evaluate

    names = [m.strip() for m in metrics.split(",") if m.strip()] if metrics else None
    ev = evaluate(resolve_target(ref), dataset, metrics=names, judge=judge,
                  concurrency=concurrency, progress=not as_json, engine=engine)
    if as_json:
        typer.echo(json.dumps(ev.to_dict(items=items)))
    else:
        typer.echo(f"{ev.ref} on {ev.dataset}@{ev.dataset_version} ({len(ev.items)} items, "
                   f"index {ev.index_version}): {ev.chain_calls} chain calls, "
                   f"{ev.metric_calls} metric calls, {ev.seconds:.1f} s")
        for m, s in ev.summary.items():
            failed = f"  {s['failures']} FAILED" if s["failures"] else ""
            typer.echo(f"  {m:22} {_fmt(s['mean'])}  (n={s['n']}){failed}")
        for r in ev.items:
            if r.error or r.failed_metrics or items:
                errs = "; ".join(f"{m}: {r.scores[m].error}" for m in r.failed_metrics)
                scores = ", ".join(f"{m}={_fmt(s.value)}" for m, s in r.scores.items())
                typer.echo(f"  - {r.item.id}: {errs or scores}")
        typer.echo(f"evaluation {ev.id}, MLflow run {ev.run_id}")
    if ev.failures:
        raise typer.Exit(1)


@app.command("show")
def show(
    model: str = typer.Argument(None, help="only this model (chain.rag_qa)"),
    evaluation_id: str = typer.Option(None, "--id", help="one evaluation in full"),
    limit: int = typer.Option(20, "--limit", min=1),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """The evaluations, newest first (model, version, dataset version, metrics, run)."""
    from llmops.eval.results import Results

    res = Results()
    try:
        rows = [res.evaluation(evaluation_id)] if evaluation_id else res.evaluations(
            model=model, limit=limit)
    finally:
        res.close()
    if as_json:
        typer.echo(json.dumps(rows, default=str))
        return
    if not rows:
        typer.echo("no evaluations yet: llmops eval run CHAIN --dataset eval/qa.jsonl")
        return
    from datetime import datetime

    for r in rows:
        at = datetime.fromtimestamp(r["created_at"]).isoformat(timespec="seconds")
        metrics = ", ".join(f"{m}={_fmt(s.get('mean'))}" + (f"({s['failures']} failed)"
                                                            if s.get("failures") else "")
                            for m, s in r["summary"].items())
        typer.echo(f"{r['id'][:12]}  {at}  {r['model']}/{r['version']}  "
                   f"{r['dataset']}@{r['dataset_version']}  n={r['n_items']}  {metrics}  "
                   f"run {r['run_id']}")


@dataset_app.command("from-feedback")
def from_feedback_cmd(
    output: Path = typer.Option(..., "--output", "-o", help="the dataset file to write"),
    source: Path = typer.Option(None, "--from",
                                help="a `llmops feedback export` file (default: the log itself)"),
    endpoint: str = typer.Option(None, "--endpoint", help="only this endpoint"),
    rating: str = typer.Option(None, "--rating", help="only up or only down"),
) -> None:
    """Reviewed answers as evaluation cases: thumbs-down answers become cases to fix."""
    from llmops.errors import EvalError
    from llmops.eval.dataset import dataset_name, from_feedback

    if source is not None:
        rows = []
        for n, line in enumerate(source.read_text().splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise EvalError(f"{source}:{n}: not valid JSON: {exc.msg}") from None
        if endpoint:
            rows = [r for r in rows if r.get("endpoint") == endpoint]
        if rating:
            rows = [r for r in rows if r.get("rating") == rating]
    else:
        from llmops.store import Store

        store = Store.open()
        try:
            rows = list(store.export_feedback(endpoint=endpoint, rating=rating))
        finally:
            store.close()
    data = from_feedback(rows, name=dataset_name(output))
    if not data.items:
        raise EvalError("no reviewed answers to turn into cases (no votes match)")
    data.save(output)
    down = sum(1 for i in data.items if i.metadata.get("rating") == "down")
    typer.echo(f"{len(data.items)} cases ({down} from thumbs-down) written to {output}, "
               f"dataset version {data.version}")


def gate(
    name: str = typer.Argument(..., help="registered model: chain.rag_qa or prompt.qa"),
    candidate: str = typer.Option("staging", "--candidate", help="alias or version number"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the decision; change nothing"),
    evaluate_production: bool = typer.Option(
        True, "--evaluate-production/--no-evaluate-production",
        help="evaluate production on the dataset if it has no evaluation there yet"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Gate a candidate: compliance, comparison with production, online feedback.

    Pass: production moves to the candidate. Fail: the candidate is archived and
    the command exits 1. --dry-run only prints.
    """
    from llmops.eval.gates import run_gate

    d = run_gate(name, candidate=candidate, dry_run=dry_run,
                 evaluate_production=evaluate_production, progress=not as_json)
    if as_json:
        typer.echo(json.dumps(d.to_dict(), default=str))
    else:
        against = f"production {d.production}" if d.production else "baselines (first deployment)"
        typer.echo(f"gate {d.model}/{d.candidate} against {against}, dataset "
                   f"{d.dataset}@{d.dataset_version}, evaluation run {d.evaluation_run}")
        d.echo()
    if not d.passed:
        raise typer.Exit(1)
