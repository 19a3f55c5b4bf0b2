"""`llmops monitor`: run (windows, drift, alerts, triggers), report (charts), alerts."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from llmops.config import get_settings

monitor_app = typer.Typer(help="Monitoring: metrics per window, drift, alerts, triggers.",
                          no_args_is_help=True)


@monitor_app.command("run")
def run_cmd(
    window: Annotated[str | None, typer.Option(help="window length (15m, 1h, 1d); "
                                                    "default: monitor.window")] = None,
    drift: Annotated[bool, typer.Option(help="test query drift (loads the embedding "
                                              "model)")] = True,
    track: Annotated[bool, typer.Option(help="log the windows to MLflow")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="report what a run would write, open and fire; write, post and "
        "start nothing")] = False,
) -> None:
    """Write every closed window not yet written; test drift; open and resolve alerts.

    Idempotent: a second run before the next window closes writes nothing. Cron:
    `5 * * * * cd /srv/project && llmops monitor run`.
    """
    from llmops.monitor.config import load_monitor_config, seconds
    from llmops.monitor.run import embedder, mlflow_tracker, run
    from llmops.store import Store

    settings = get_settings()
    cfg = load_monitor_config(settings.project_dir)
    store = Store.open()
    try:
        report = run(store, cfg, window_s=seconds(window) if window else None,
                     embed=embedder(settings.embedding_identity) if drift else None,
                     tracker=mlflow_tracker(settings) if track else None, dry_run=dry_run)
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps({
            "window_s": report.window_s, "windows": report.windows, "drift": report.drift,
            "events": [{"kind": e.kind, **e.alert} for e in report.events],
            "actions": report.actions, "run_id": report.run_id}, default=str, indent=2))
        return
    typer.echo(("dry run (nothing written, posted or started): " if dry_run else "")
               + report.summary())
    for e in report.events:
        typer.echo(f"  alert {e.kind}: {e.alert['message']}")
    for a in report.actions:
        typer.echo(f"  trigger {a['trigger']}: {a['status']}: {a['detail'].splitlines()[0]}")


@monitor_app.command("report")
def report_cmd(
    out: Annotated[Path, typer.Option("-o", "--out", help="folder for the PNGs")] = Path(
        "monitor-report"),
    window: Annotated[str | None, typer.Option(help="window length (default: monitor.window)")]
    = None,
    days: Annotated[float, typer.Option(help="how far back")] = 7.0,
) -> None:
    """One PNG per metric over time (a line per endpoint and variant), from the windows."""
    from llmops.monitor.config import load_monitor_config, seconds
    from llmops.monitor.report import write_charts
    from llmops.store import Store

    cfg = load_monitor_config(get_settings().project_dir)
    w = seconds(window) if window else cfg.window_s
    store = Store.open()
    try:
        rows = store.list_windows(window_s=w, since=time.time() - days * 86400)
    finally:
        store.close()
    if not rows:
        typer.echo("no windows written yet: run `llmops monitor run` first", err=True)
        raise typer.Exit(1)
    for path in write_charts(rows, out):
        typer.echo(str(path))


@monitor_app.command("alerts")
def alerts_cmd(
    open_only: Annotated[bool, typer.Option("--open", help="only open alerts")] = False,
) -> None:
    """Alerts, newest last, with the trigger runs they started."""
    from llmops.store import Store

    store = Store.open()
    try:
        alerts = store.list_alerts(open_only=open_only)
        actions = store.list_actions()
    finally:
        store.close()
    for a in alerts:
        state = "open" if a["resolved_at"] is None else f"resolved {a['resolved_at']:.0f}"
        typer.echo(f"#{a['id']} [{state}] {a['message']}")
        for x in actions:
            if x["alert_id"] == a["id"]:
                typer.echo(f"    {x['trigger']}: {x['status']}: {(x['detail'] or '')[:200]}")
