"""`llmops tabular`: features refresh, train, drift, status of a pipeline in tabular/."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any

import typer

from llmops.config import get_settings

tabular_app = typer.Typer(help="Tabular pipelines: Delta feature tables, models, drift.",
                          no_args_is_help=True)
features_app = typer.Typer(help="The feature tables (bronze, silver, quarantine, gold).",
                           no_args_is_help=True)
tabular_app.add_typer(features_app, name="features")

Pipeline = Annotated[str, typer.Argument(help="a pipeline in tabular/ (cancer) or its file")]


@features_app.command("refresh")
def refresh_cmd(pipeline: Pipeline,
                day: Annotated[int | None, typer.Option(help="the stream's day to ingest "
                                                              "(default: the next)")] = None,
                ) -> None:
    """Ingest a day's batch into bronze and bring silver, quarantine and gold up to it."""
    from llmops.tabular.config import load_pipeline
    from llmops.tabular.pipeline import refresh

    settings = get_settings()
    spec = load_pipeline(pipeline, settings)
    done, report = refresh(spec, settings, day=day)
    v = report.versions
    typer.echo(f"{spec.name}: day {done} ingested; {report.silver_rows} rows into silver, "
               f"{report.quarantined} quarantined, {report.gold_rows} into gold "
               f"(versions: bronze {v['bronze']}, silver {v['silver']}, gold {v['gold']})")


@tabular_app.command("train")
def train_cmd(pipeline: Pipeline,
              as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
              dry_run: Annotated[bool, typer.Option(
                  "--dry-run", help="say what a run would train on; register nothing")] = False,
              ) -> None:
    """Train on the gold table (point in time), evaluate on held-out entities, register
    tabular.<name> and move its staging alias to the new version."""
    from llmops.registry import get_registry
    from llmops.tabular.config import load_pipeline
    from llmops.tabular.pipeline import plan_train, train

    settings = get_settings()
    if dry_run:
        spec = load_pipeline(pipeline, settings)
        gold, rows, held, staging = plan_train(spec, settings, get_registry())
        typer.echo(f"dry run: {spec.registered_name}: a run would train on gold version "
                   f"{gold} ({rows} rows, {held} held out), register the model and move "
                   f"staging from {'unset' if staging is None else staging}; nothing changed")
        return
    t = train(load_pipeline(pipeline, settings), settings, get_registry())
    if as_json:
        typer.echo(json.dumps({"ref": t.ref, "created": t.created, "gold_version": t.gold_version,
                               "rows": t.rows, "metrics": t.metrics,
                               "best_params": t.info["best_params"]}))
        return
    scores = ", ".join(f"{k} {v:.4f}" for k, v in t.metrics.items())
    typer.echo(f"{t.ref} ({'new' if t.created else 'already registered'}) on gold version "
               f"{t.gold_version}, {t.rows} rows: {scores}; staging -> {t.ref}")


@tabular_app.command("evaluate")
def evaluate_cmd(pipeline: Pipeline,
                 ref: Annotated[str, typer.Option(help="alias or version")] = "staging",
                 as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
                 ) -> None:
    """Hold-out metrics of a version on the gold table now, logged to MLflow."""
    from llmops.registry import get_registry
    from llmops.tabular.config import load_pipeline
    from llmops.tabular.pipeline import evaluate_version

    settings = get_settings()
    version, gold, rows, metrics = evaluate_version(load_pipeline(pipeline, settings), settings,
                                                    get_registry(), ref=ref)
    if as_json:
        typer.echo(json.dumps({"ref": version.ref, "gold_version": gold, "holdout_rows": rows,
                               "metrics": metrics}))
        return
    scores = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
    typer.echo(f"{version.ref} on {rows} held-out rows of gold version {gold}: {scores}")


@tabular_app.command("batch-infer")
def batch_infer_cmd(
        pipeline: Pipeline,
        ref: Annotated[str, typer.Option(help="alias or version")] = "production",
        gold_version: Annotated[int | None, typer.Option(
            help="the gold version to read (default: the newest)")] = None,
        all_rows: Annotated[bool, typer.Option(
            "--all", help="every row of that gold version, not only the rows it added")] = False,
        engine: Annotated[str | None, typer.Option(
            help="pandas or spark (default: the profile's tabular.engine)")] = None,
        force: Annotated[bool, typer.Option(help="score again rows scored before")] = False,
        as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Score gold rows with a version of tabular.<name> into the predictions table
    (a Delta table; every row names the model version and gold version)."""
    from dataclasses import asdict

    from llmops.errors import ConfigError
    from llmops.registry import get_registry
    from llmops.tabular.config import load_pipeline
    from llmops.tabular.pipeline import infer

    if engine not in (None, "pandas", "spark"):
        raise ConfigError(f"--engine {engine!r}: expected pandas or spark")
    settings = get_settings()
    done = infer(load_pipeline(pipeline, settings), settings, get_registry(), ref=ref,
                 gold_version=gold_version, scope="all" if all_rows else "batch",
                 engine=engine, force=force)  # type: ignore[arg-type]
    if as_json:
        typer.echo(json.dumps(asdict(done)))
        return
    what = "every row" if all_rows else "the rows it added"
    if done.skipped:
        typer.echo(f"{done.model} has scored {what} of gold version {done.gold_version} "
                   "already (--force scores again)")
        return
    typer.echo(f"{done.model}: {done.rows} rows ({what} of gold version {done.gold_version}) "
               f"scored with {done.engine} in {done.seconds:.1f} s; predictions version "
               f"{done.table_version}")


# The command floor registers what a drift check is also handed to (the monitor's alert
# rules and triggers): called with the pipeline's name and the DriftCheck; each returns
# lines to print. Nothing registered: the check only prints.
DRIFT_SINKS: list[Callable[[str, Any], list[str]]] = []


@tabular_app.command("drift")
def drift_cmd(pipeline: Pipeline,
              ref: Annotated[str, typer.Option(help="alias or version whose training set is "
                                                    "the reference")] = "production",
              alerts: Annotated[bool, typer.Option(
                  help="hand the result to the monitor's alert rules (llmops.yaml)")] = True,
              ) -> None:
    """The newest gold batch against the model's training set: PSI and KS per feature.
    The result goes through the monitor's alert rules (metrics features_drifted, max_psi,
    min_drift_p on endpoint tabular.<name>), which may start a retrain-and-gate trigger.
    Exit 1 if a feature drifted."""
    from llmops.registry import get_registry
    from llmops.tabular.config import load_pipeline
    from llmops.tabular.pipeline import drift

    settings = get_settings()
    spec = load_pipeline(pipeline, settings)
    check = drift(spec, settings, get_registry(), ref=ref)
    typer.echo(f"the {check.batch_rows} rows of gold version {check.gold_version} against "
               f"the training set of {check.model} ({check.reference_rows} rows): "
               f"{len(check.drifted)} of {len(check.features)} features drifted")
    for d in sorted(check.features, key=lambda d: -d.psi)[:10]:
        typer.echo(f"  {'DRIFT ' if d.drifted else '      '}{d.feature:28} PSI {d.psi:6.3f}  "
                   f"KS {d.ks:5.3f}  p {d.p_value:.2g}")
    for sink in DRIFT_SINKS if alerts else []:
        for line in sink(spec.name, check):
            typer.echo(line)
    if check.drifted:
        raise typer.Exit(1)
