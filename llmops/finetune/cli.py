"""`llmops finetune ...`: train a recipe's adapter, or look at its data first."""

from __future__ import annotations

import json
from pathlib import Path

import typer

app = typer.Typer(help="LoRA fine-tuning: recipes in finetune/, adapters in the registry.",
                  no_args_is_help=True)


@app.command("run")
def run_cmd(
    recipe: Path = typer.Argument(..., help="recipe file, e.g. finetune/house_style.yaml"),
    resume: bool = typer.Option(False, "--resume", help="go on from the last checkpoint"),
    merge: bool = typer.Option(False, "--merge", help="also register merged weights"),
    force: bool = typer.Option(False, "--force", help="train even if this recipe and data "
                               "version are registered already"),
    as_json: bool = typer.Option(False, "--json", help="print JSON (last line)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="check the recipe and its data, "
                                 "say what a run would do; train and register nothing"),
) -> None:
    """Train the recipe's LoRA adapter, log one MLflow run, register adapter.<name>."""
    from llmops.finetune.train import plan, run

    if dry_run:
        prep, done = plan(recipe, force=force)
        name = prep.recipe.registered_name
        typer.echo(
            f"dry run: {name}: version {done.version} was trained from this recipe and data "
            f"({prep.version}) already; a run does nothing" if done else
            f"dry run: {name}: a run would train on {len(prep.train)} examples "
            f"({len(prep.eval)} to evaluate, data {prep.version}) and register a new version")
        return
    result = run(recipe, resume=resume, merge=merge, force=force, progress=not as_json)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), default=str))
        return
    m = result.metrics
    state = "registered" if result.created else "unchanged,"
    if not result.steps:
        typer.echo(f"adapter.{result.name}: version {result.version} was trained from this "
                   f"recipe and data ({result.data_version}) already; --force trains again")
        return
    typer.echo(f"adapter.{result.name}: {state} version {result.version} "
               f"(run {result.run_id}, data {result.data_version}, {result.steps} steps"
               + (f", resumed from step {result.resumed_from}" if result.resumed_from else "")
               + ")")
    if "eval_loss_before" in m:
        typer.echo(f"  eval loss {m['eval_loss_before']:.3f} -> {m['eval_loss_after']:.3f}, "
                   f"perplexity {m['perplexity_before']:.1f} -> {m['perplexity_after']:.1f}")
    typer.echo(f"  {m['tokens_per_s']:.0f} tokens/s, peak memory {m['peak_memory_mb']:.0f} MiB"
               + (f", MFU {m['mfu']:.1%}" if "mfu" in m else ""))


@app.command("data")
def data_cmd(
    recipe: Path = typer.Argument(..., help="recipe file"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """The recipe's training set: conversations, version, tokens; nothing is trained."""
    from transformers import AutoTokenizer

    from llmops.finetune.recipe import check_recipe, load_recipe
    from llmops.finetune.train import prepare
    from llmops.hub import resolve_base_model

    spec = load_recipe(recipe)
    check_recipe(spec, recipe)
    prep = prepare(spec, AutoTokenizer.from_pretrained(resolve_base_model(spec.base)))
    out = {"recipe": spec.name, "conversations": prep.conversations,
           "data_version": prep.version, "train": len(prep.train), "eval": len(prep.eval),
           "dropped": prep.dropped,
           "tokens": sum(len(e.input_ids) for e in prep.train + prep.eval),
           "trained_tokens": sum(e.trained_tokens for e in prep.train + prep.eval)}
    if as_json:
        typer.echo(json.dumps(out))
        return
    for k, v in out.items():
        typer.echo(f"{k}: {v}")
