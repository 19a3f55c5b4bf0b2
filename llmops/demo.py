"""The main job on the embedded defaults (`make demo`).

Refreshes the vector index over the Python documentation, pushes the
reference prompts and promotes the QA prompts through staging to production by
compare-and-set, logs the RAG chain with prompt.qa pinned, evaluates it on the
smoke dataset (ragas, no judge) and gates it to production, answers a Python
question with the local SmolLM2 model, with its sources and lineage. Then it
logs the A/B candidate (the chain with prompt.qa_brief) to staging, evaluates
it and runs its gate as a dry run. Then it trains the house-style LoRA adapter
(`finetune/house_style.yaml`; `--no-finetune` skips it), stages it and the
chain that uses it as the A/B candidate, with its dry-run gate. Then the
tabular loop (`tabular/cancer.yaml`; `--no-tabular` skips it): daily batches
into Delta feature tables, training, the gate, batch inference, and a drift
check per new day whose alert retrains and gates. Then it
serves the gateway on the reference routes (both variants of `rag-qa` live)
and prints the URL, a client and a reviewer key and a curl line; `--smoke`
instead sends a few chats and votes through it and exits 0.
Every step is idempotent: a second run changes nothing it need not.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer

QUESTION = "How does the with statement work?"
SMOKE_DATASET = "eval/qa_smoke.jsonl"


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


def _aliases(reg: Any, name: str) -> dict[str, int]:
    return {a: v.version for v in reg.list_versions(name) for a in v.aliases}


def _stage(reg: Any, name: str, version: int) -> None:
    current = _aliases(reg, name).get("staging")
    if current == version:
        typer.echo(f"   {name}@staging is already version {version}")
        return
    reg.move_alias(name, "staging", version, expect=current, reason="make demo")
    typer.echo(f"   {name}@staging: {current or 'unset'} -> {version}")


def _evaluate(ref: str) -> None:
    """The smoke evaluation (cached: a second run makes no chain calls)."""
    from llmops.config import get_settings
    from llmops.eval.runner import evaluate

    ev = evaluate(ref, get_settings().project_dir / SMOKE_DATASET)
    typer.echo(f"   evaluated {ev.ref} on {ev.dataset}@{ev.dataset_version}: "
               f"{len(ev.items)} items, {ev.chain_calls} chain calls, {ev.seconds:.0f} s")
    typer.echo("     " + ", ".join(f"{m} {s['mean']:.3f}" if s["mean"] is not None
                                   else f"{m} NaN" for m, s in ev.summary.items()))
    if ev.failures:
        typer.secho(f"     {ev.failures} scores failed (each counts against the gate)", fg="red")


def _gate(name: str, version: int, *, dry_run: bool) -> None:
    from llmops.eval.gates import run_gate

    d = run_gate(name, candidate=str(version), dry_run=dry_run)
    d.echo(indent="   ")
    if not d.passed and not d.dry_run:
        raise typer.Exit(1)


def _finetune_step(reg: Any, rag: Any) -> None:
    """Fine-tune the house-style adapter, stage it, log chain.rag_qa with it as the A/B
    candidate, evaluate it and dry-run the adapter's gate."""
    import llmops.chains as chains
    from llmops.config import get_settings
    from llmops.finetune import run

    recipe = get_settings().project_dir / "finetune" / "house_style.yaml"
    with _step("8. fine-tune adapter.house_style (LoRA, a few CPU steps; JSONL + rated-up "
               "feedback)"):
        r = run(recipe)
        m = r.metrics
        typer.echo(f"   adapter.house_style: {'registered' if r.created else 'unchanged,'} "
                   f"version {r.version} (data {r.data_version}, {r.steps} steps, "
                   f"{m['tokens_per_s']:.0f} tokens/s)")
        if "eval_loss_before" in m:
            typer.echo(f"     eval loss {m['eval_loss_before']:.3f} -> "
                       f"{m['eval_loss_after']:.3f}")
        assert r.version is not None
        _stage(reg, "adapter.house_style", r.version)
    with _step("9. the adapter candidate: chain.rag_qa with adapter.house_style, to staging; "
               "evaluate it, dry-run its gate"):
        candidate = chains.log(rag, adapter="adapter.house_style@staging")
        typer.echo(f"   {candidate.name}: {'registered' if candidate.created else 'unchanged,'}"
                   f" version {candidate.version} (adapter {candidate.lineage.get('adapter')})")
        if _aliases(reg, "chain.rag_qa").get("production") == candidate.version:
            typer.echo(f"   chain.rag_qa@production is already version {candidate.version}")
            return
        _stage(reg, "chain.rag_qa", candidate.version)
        _evaluate(f"chain.rag_qa/{candidate.version}")
        _gate("adapter.house_style", r.version, dry_run=True)


def _tabular_step(reg: Any) -> None:
    """The tabular loop on tabular/cancer.yaml: the first six days into the feature
    tables, train, gate to production, batch inference; then day by day, each batch's
    drift through the monitor's alert rules (day 8 is shifted: its alert retrains and
    gates), and the production model scores the newest batch."""
    from llmops.config import get_settings
    from llmops.eval.gates import run_gate
    from llmops.tabular.cli import DRIFT_SINKS
    from llmops.tabular.config import load_pipeline
    from llmops.tabular.pipeline import drift, infer, medallion, refresh, train

    settings = get_settings()
    spec = load_pipeline("cancer", settings)
    days = spec.source.days
    name = spec.registered_name

    def ingest(day: int) -> None:
        _, r = refresh(spec, settings, day=day)
        typer.echo(f"   day {day}: {r.silver_rows} rows into silver, {r.quarantined} "
                   f"quarantined, {r.gold_rows} into gold (gold version {r.versions['gold']})")

    def score() -> None:
        s = infer(spec, settings, reg, ref="production")
        typer.echo(f"   batch-infer {s.model}: " + (
            f"gold version {s.gold_version} scored already" if s.skipped else
            f"{s.rows} rows of gold version {s.gold_version} into predictions "
            f"(version {s.table_version}, {s.seconds:.1f} s)"))

    done = len(medallion(spec, settings).ingested())
    logging.getLogger("llmops.monitor").setLevel(logging.ERROR)  # the demo prints its own
    with _step(f"10. tabular: {name} from Delta feature tables: refresh, train, gate, "
               "batch-infer; drift alerts retrain"):
        if done >= days:
            typer.echo(f"   all {days} days of the stream are in bronze and gold; production is "
                       f"{name}/{_aliases(reg, name).get('production')}")
            score()
            return
        first = 6
        for day in range(done, first):
            ingest(day)
        if not reg.exists(name) or "production" not in _aliases(reg, name):
            t = train(spec, settings, reg)
            typer.echo(f"   train: {t.ref} on gold version {t.gold_version} ({t.rows} rows, "
                       f"C={t.info['best_params']['clf__C']}): " + ", ".join(
                           f"{k} {v:.3f}" for k, v in t.metrics.items()))
            run_gate(name, candidate="staging").echo(indent="   ")
        score()
        for day in range(max(done, first), days):
            ingest(day)
            check = drift(spec, settings, reg, ref="production")
            typer.echo(f"     drift against {check.model}: {len(check.drifted)} of "
                       f"{len(check.features)} features" + "".join(
                           f"; {d.feature} PSI {d.psi:.2f}" for d in check.drifted))
            lines = [line for sink in DRIFT_SINKS for line in sink(spec.name, check)]
            for line in lines:
                typer.echo("   " + line)
            if check.drifted and not lines:
                typer.echo("       (its alert is open already: no second trigger)")
        score()


def demo(
    question: str = typer.Option(QUESTION, "--question", "-q", help="what to ask"),
    max_tokens: int = typer.Option(120, "--max-tokens", help="cap on the answer, tokens"),
    serve: bool = typer.Option(True, "--serve/--no-serve", help="end by serving the gateway"),
    smoke: bool = typer.Option(
        False, "--smoke", help="instead of serving on, send a few chats and votes, then exit"
    ),
    finetune: bool = typer.Option(
        True, "--finetune/--no-finetune", help="fine-tune the house-style adapter (a few CPU "
        "steps, under two minutes) and stage chain.rag_qa with it as the A/B candidate"),
    tabular: bool = typer.Option(
        True, "--tabular/--no-tabular", help="run the tabular loop (tabular/cancer.yaml)"),
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

    with _step("3. promote prompt.qa and prompt.qa_brief to staging, then production"):
        for name in ("qa", "qa_brief"):
            _promote(prompts.promote, prompts.versions, name,
                     prompts.versions(name)[-1].version, "prompt")
        for rec in reg.history("prompt.qa")[-2:]:
            typer.echo(f"   audit #{rec.seq}: {rec.alias} {rec.from_version} -> "
                       f"{rec.to_version} by {rec.actor} at {rec.at}")

    rag = project / "chains" / "rag_qa.py"
    with _step("4. log chain.rag_qa with prompt.qa pinned; evaluate it and gate it to production"):
        logged = chains.log(rag)
        typer.echo(f"   {logged.name}: {'registered' if logged.created else 'unchanged,'} "
                   f"version {logged.version}")
        for key in ("prompt", "prompt_version", "index_collection", "index_version_at_log",
                    "base_model"):
            typer.echo(f"     {key}: {logged.lineage.get(key)}")
        if _aliases(reg, "chain.rag_qa").get("production") == logged.version:
            typer.echo(f"   chain.rag_qa@production is already version {logged.version}")
        else:
            _stage(reg, "chain.rag_qa", logged.version)
            _evaluate(f"chain.rag_qa/{logged.version}")
            _gate("chain.rag_qa", logged.version, dry_run=False)

    with _step("5. ask chain.rag_qa@production (local SmolLM2)"):
        chain = chains.load("chain.rag_qa@production")
        result = chain.invoke(question, max_tokens=max_tokens)
        typer.echo(f"   Q: {question}")
        typer.secho(f"   A: {result.answer}", fg="green")
        typer.echo("   sources:")
        for s in result.sources:
            typer.echo(f"     {s['score']:.3f}  {s['title']}  ({s['id']})")
        lin = result.lineage
        typer.echo(f"   lineage: {lin.chain}/{lin.chain_version} <- "
                   f"{lin.prompt}/{lin.prompt_version}, index {lin.index_collection} "
                   f"v{lin.index_version}, {lin.base_model}, "
                   f"{lin.completion_tokens} tokens in {(lin.latency_ms or 0) / 1000:.1f} s")

    with _step("6. the A/B candidate: chain.rag_qa with prompt.qa_brief, to staging; evaluate it"):
        candidate = chains.log(rag, prompt="qa_brief@production")
        typer.echo(f"   {candidate.name}: {'registered' if candidate.created else 'unchanged,'} "
                   f"version {candidate.version} (prompt {candidate.lineage.get('prompt')}/"
                   f"{candidate.lineage.get('prompt_version')})")
        if _aliases(reg, "chain.rag_qa").get("production") == candidate.version:
            typer.echo(f"   chain.rag_qa@production is already version {candidate.version}")
        else:
            _stage(reg, "chain.rag_qa", candidate.version)
            _evaluate(f"chain.rag_qa/{candidate.version}")
            typer.echo("   its gate, as a dry run (gate it once reviewers' votes are in):")
            _gate("chain.rag_qa", candidate.version, dry_run=True)

    with _step("7. promote prompt.assistant and log chain.chat (the gateway's chat endpoint)"):
        _promote(prompts.promote, prompts.versions, "assistant",
                 prompts.versions("assistant")[-1].version, "prompt")
        chat = chains.log(project / "chains" / "chat.py")
        typer.echo(f"   {chat.name}: {'registered' if chat.created else 'unchanged,'} "
                   f"version {chat.version}")
        _promote(chains.promote, lambda n: reg.list_versions(f"chain.{n}"), "chat",
                 chat.version, "chain")

    if finetune:
        _finetune_step(reg, rag)
    if tabular:
        _tabular_step(reg)

    typer.echo("\nTry: llmops index query \"what is a generator\"; llmops prompts list; "
               "llmops registry history chain.rag_qa")
    if serve or smoke:
        from llmops.serving.demo import gateway_demo

        raise typer.Exit(gateway_demo(smoke=smoke))
