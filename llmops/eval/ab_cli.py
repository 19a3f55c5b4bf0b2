"""`llmops ab report ENDPOINT`: the online A/B report of an endpoint from the feedback log.

Mounted by `llmops/cli.py`:
    from llmops.eval.ab_cli import app as ab_app
    app.add_typer(ab_app, name="ab")
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from llmops.eval.online import Report

app = typer.Typer(help="Online A/B evaluation: thumbs up/down per variant, from the request log.",
                  no_args_is_help=True)


@app.callback()
def _ab() -> None:
    """Online A/B evaluation: thumbs up/down per variant, from the request log."""  # a group


def parse_time(text: str, option: str = "--since") -> float:
    """Unix seconds from `1767225600`, `2026-01-01` or `2026-01-01T12:00:00Z` (no zone: local)."""
    from llmops.errors import EvalError

    value = text.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = datetime.fromisoformat(re.sub(r"[zZ]$", "+00:00", value)).timestamp()
        except ValueError:
            raise EvalError(f"{option} {text!r}: not an ISO date or time, nor unix seconds") from None
    if not math.isfinite(seconds):
        raise EvalError(f"{option} {text!r}: not a finite time")
    return seconds


def default_png(endpoint: str) -> Path:
    """`<home>/reports/ab-<endpoint>.png`, the endpoint name made safe for a file name."""
    from llmops.config import get_settings

    safe = re.sub(r"[^A-Za-z0-9_.\-]", "_", endpoint)
    return get_settings().home_dir / "reports" / f"ab-{safe}.png"


@app.command("report")
def report_cmd(
    endpoint: str = typer.Argument(..., help="endpoint of serving/routes.yaml, e.g. rag-qa"),
    baseline: str = typer.Option("production", "--baseline", help="variant to compare against"),
    candidate: str = typer.Option(
        None, "--candidate",
        help="variant to compare (default: the other one, when the endpoint has two)"),
    since: str = typer.Option(
        None, "--since", help="only requests served from this time on: ISO date/time or unix s"),
    until: str = typer.Option(
        None, "--until", help="only requests served before this time: ISO date/time or unix s"),
    png: Path = typer.Option(
        None, "--png", help="chart file (default: <home>/reports/ab-<endpoint>.png)"),
    no_png: bool = typer.Option(False, "--no-png", help="do not write the chart"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Thumbs-up rate per variant with Wilson intervals, and candidate against baseline."""
    from llmops.eval.online import report
    from llmops.store import Store

    start = parse_time(since, "--since") if since else None
    end = parse_time(until, "--until") if until else None
    path = None if no_png else (png or default_png(endpoint))
    store = Store.open()
    try:
        rep = report(store, endpoint, baseline=baseline, candidate=candidate, png=path,
                     since=start, until=end)
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps(rep.to_dict(), indent=2))
        return
    _print(rep)


def _print(rep: Report) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"{rep.endpoint}: thumbs up/down per variant")
    for col in ("variant", "chain", "versions", "requests", "failed", "votes", "up", "down",
                "up rate", "95% interval", "feedback rate"):
        table.add_column(col, justify="left" if col in ("variant", "chain") else "right")
    for s in rep.variants:
        rate = "-" if s.votes == 0 else f"{s.rate:.1%}"
        interval = "-" if s.votes == 0 else f"{s.low:.1%} .. {s.high:.1%}"
        fb = "-" if s.requests == 0 else f"{s.feedback_rate:.1%}"
        table.add_row(s.variant, s.chain or "-", ",".join(map(str, s.chain_versions)) or "-",
                      str(s.requests), str(s.failed), str(s.votes), str(s.up), str(s.down),
                      rate, interval, fb)
    console.print(table)
    if rep.comparison is not None:
        console.print(rep.comparison.summary(), markup=False, highlight=False)
    if rep.note:
        console.print(rep.note, markup=False, highlight=False)
    if rep.png is not None:
        console.print(f"chart: {rep.png}", markup=False, highlight=False, soft_wrap=True)
