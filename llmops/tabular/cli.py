"""`llmops tabular`: features refresh, train, drift, status of a pipeline in tabular/."""

from __future__ import annotations

import json
from typing import Annotated

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
              ) -> None:
    """Train on the gold table (point in time), evaluate on held-out entities, register
    tabular.<name> and move its staging alias to the new version."""
    from llmops.registry import get_registry
    from llmops.tabular.config import load_pipeline
    from llmops.tabular.pipeline import train

    settings = get_settings()
    t = train(load_pipeline(pipeline, settings), settings, get_registry())
    if as_json:
        typer.echo(json.dumps({"ref": t.ref, "created": t.created, "gold_version": t.gold_version,
                               "rows": t.rows, "metrics": t.metrics,
                               "best_params": t.info["best_params"]}))
        return
    scores = ", ".join(f"{k} {v:.4f}" for k, v in t.metrics.items())
    typer.echo(f"{t.ref} ({'new' if t.created else 'already registered'}) on gold version "
               f"{t.gold_version}, {t.rows} rows: {scores}; staging -> {t.ref}")


@tabular_app.command("drift")
def drift_cmd(pipeline: Pipeline,
              ref: Annotated[str, typer.Option(help="alias or version whose training set is "
                                                    "the reference")] = "staging",
              ) -> None:
    """The newest gold batch against the model's training set: PSI and KS per feature;
    exit 1 if a feature drifted."""
    from llmops.registry import get_registry
    from llmops.tabular.config import load_pipeline
    from llmops.tabular.pipeline import drift

    settings = get_settings()
    model, rows = drift(load_pipeline(pipeline, settings), settings, get_registry(), ref=ref)
    moved = [d for d in rows if d.drifted]
    typer.echo(f"newest batch against the training set of {model}: "
               f"{len(moved)} of {len(rows)} features drifted")
    for d in sorted(rows, key=lambda d: -d.psi)[:10]:
        typer.echo(f"  {'DRIFT ' if d.drifted else '      '}{d.feature:28} PSI {d.psi:6.3f}  "
                   f"KS {d.ks:5.3f}  p {d.p_value:.2g}")
    if moved:
        raise typer.Exit(1)
