"""PNG charts of the window metrics over time (`llmops monitor report`)."""

from __future__ import annotations

import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

CHARTS = {
    "requests": "requests per window",
    "error_rate": "error rate",
    "latency_p95_ms": "latency p95 (ms)",
    "latency_p99_ms": "latency p99 (ms)",
    "thumbs_up_rate": "thumbs-up rate",
    "top1_mean": "best chunk similarity (mean)",
    "low_similarity_rate": "share of questions under the similarity floor",
    "refusal_rate": "refusal rate",
    "answer_chars_mean": "answer length (characters)",
    "completion_tokens": "completion tokens per window",
}


def value(row: dict[str, Any], metric: str) -> float | None:
    n = row["requests"]
    if metric == "error_rate":
        return row["errors"] / n if n else None
    if metric == "refusal_rate":
        return row["refusals"] / n if n else None
    if metric == "thumbs_up_rate":
        return row["up"] / row["votes"] if row["votes"] else None
    if metric == "low_similarity_rate":
        return row["low_similarity"] / row["retrieved"] if row["retrieved"] else None
    v = row.get(metric)
    return None if v is None else float(v)


def write_charts(rows: list[dict[str, Any]], out: Path) -> list[Path]:
    """One PNG per metric in `out` (written atomically); their paths."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out.mkdir(parents=True, exist_ok=True)
    series: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        series.setdefault((r["endpoint"], r["variant"] or "all"), []).append(r)
    paths = []
    for metric, title in CHARTS.items():
        fig = Figure(figsize=(8, 3.6), dpi=100)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        for (endpoint, variant), points in sorted(series.items()):
            pairs = [(datetime.fromtimestamp(p["window_start"], timezone.utc), v)
                     for p in points if (v := value(p, metric)) is not None]
            if pairs:
                xs, ys = zip(*pairs, strict=True)
                ax.plot(list(xs), list(ys), marker=".", label=f"{endpoint}/{variant}")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
        fig.autofmt_xdate()
        path = out / f"{metric}.png"
        fd, tmp = tempfile.mkstemp(dir=out, suffix=".png.tmp")
        os.close(fd)
        fig.savefig(tmp, format="png")
        os.replace(tmp, path)
        paths.append(path)
    return paths
