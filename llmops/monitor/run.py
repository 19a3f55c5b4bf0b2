"""`llmops monitor run`: metrics of every closed window not yet written, drift, alerts.

1. The windows between the last one written and the last closed one (never the one
   still filling) are computed in the database and written once: a second run in the
   same window writes nothing, so cron may run it as often as it likes.
2. Per endpoint and new window: query drift against the windows before it (the MMD
   test on question embeddings, `drift.py`) and the questions the index cannot answer.
3. In window order, every alert rule against every row: alerts open and resolve, and
   an opened alert may post to the webhook and start its trigger (`alerts.py`).
4. The window metrics go to one MLflow run of the `monitor` experiment.

A dry run (`dry_run=True`) does all of it on a store that reads the log and writes
nothing (`DryStore`): it reports the windows, drift, alerts and triggers a run would
write, open and fire, and posts, fires and logs nothing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from llmops.monitor import alerts as alerting
from llmops.monitor.config import MonitorConfig
from llmops.monitor.drift import answer_drift, mmd_test, question_of, unanswerable
from llmops.store import REFUSALS, Store

Embed = Callable[[list[str]], np.ndarray]
TRACKED = ("requests", "errors", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms",
           "votes", "up", "top1_mean", "low_similarity", "answer_chars_mean", "refusals")


@dataclass
class RunReport:
    window_s: int
    windows: list[dict[str, Any]] = field(default_factory=list)  # rows written now
    drift: list[dict[str, Any]] = field(default_factory=list)
    events: list[alerting.Event] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)
    run_id: str | None = None

    def summary(self) -> str:
        starts = sorted({w["window_start"] for w in self.windows})
        span = (f"{len(starts)} window{'s' if len(starts) != 1 else ''} "
                f"({len(self.windows)} rows)" if starts else "no closed window to add")
        opened = sum(e.kind == "opened" for e in self.events)
        resolved = len(self.events) - opened
        return (f"{span}; {len(self.drift)} drift tests; {opened} alerts opened, "
                f"{resolved} resolved; {len(self.actions)} trigger records")


def run(store: Store, cfg: MonitorConfig, *, now: float | None = None,
        window_s: int | None = None, embed: Embed | None = None,
        tracker: Callable[[list[dict[str, Any]]], str | None] | None = None,
        dry_run: bool = False) -> RunReport:
    """Bring the monitor up to the last closed window; see the module's docstring."""
    if dry_run:
        store, tracker = DryStore(store), None  # type: ignore[assignment]
    w = window_s or cfg.window_s
    now = time.time() if now is None else now
    report = RunReport(w)
    end = math.floor(now / w) * w  # the window still filling is never written
    last = store.last_window(w)
    if last is not None:
        start = last + w
    else:
        first = store.first_request_at()
        if first is None:
            return report
        start = math.floor(first / w) * w
    if start >= end:
        return report
    rows = store.window_metrics(window_s=w, since=start, until=end,
                                floor=cfg.similarity_floor, refusals=cfg.refusals or REFUSALS)
    rows = store.save_windows(rows)  # only what this run wrote: a concurrent run alerts once
    report.windows = rows
    for ws in sorted({r["window_start"] for r in rows}):
        current = [r for r in rows if r["window_start"] == ws]
        drift_rows = [d for d in (_drift(store, cfg, ep, ws, w, embed)
                                  for ep in sorted({r["endpoint"] for r in current}))
                      if d is not None]
        report.drift += drift_rows
        events, actions = check(store, cfg, current + drift_rows, ws + w, dry_run=dry_run)
        report.events += events
        report.actions += actions
    if tracker is not None and rows:
        report.run_id = tracker(rows)
    return report


def check(store: Store, cfg: MonitorConfig, rows: list[dict[str, Any]], at: float, *,
          dry_run: bool = False) -> tuple[list[alerting.Event], list[dict[str, Any]]]:
    """Every alert rule against rows of one moment (a window's, or a tabular drift
    check's): alerts open and resolve, post to the webhook, and start their triggers
    (`dry_run`: neither posted nor started; the triggers it would start are reported)."""
    events, actions = [], []
    for event in alerting.evaluate(store, cfg, rows, at):
        events.append(event)
        rule = next(a for a in cfg.alerts if a.name == event.alert["rule"])
        fires = event.kind == "opened" and rule.trigger is not None
        if dry_run:
            if fires:
                trigger = cfg.triggers[str(rule.trigger)]
                actions.append({"trigger": rule.trigger, "status": "would fire",
                                "detail": f"{trigger.action} on alert {rule.name} (dry run: "
                                          "not started)"})
            continue
        alerting.notify(cfg, event)
        if fires:
            actions.append(alerting.fire(store, cfg, str(rule.trigger), event.alert, at))
    return events, actions


class DryStore:
    """The store as a dry run sees it: every read goes to the real one, no write does;
    alerts a dry run opens or resolves stay in memory, so later windows see them."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._opened: dict[int, dict[str, Any]] = {}
        self._resolved: set[int] = set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def save_windows(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [dict(r) for r in rows]

    def save_drift(self, row: dict[str, Any]) -> bool:
        return True

    def open_alert(self, **values: Any) -> int:
        key = -(len(self._opened) + len(self._resolved) + 1)
        self._opened[key] = {**values, "id": key, "resolved_at": None}
        return key

    def resolve_alert(self, alert_id: int, at: float) -> None:
        self._opened.pop(alert_id, None)
        self._resolved.add(alert_id)

    def list_alerts(self, *, open_only: bool = False) -> list[dict[str, Any]]:
        real = [a for a in self._store.list_alerts(open_only=open_only)
                if a["id"] not in self._resolved]
        return real + list(self._opened.values())


def tabular_drift(store: Store, cfg: MonitorConfig, *, pipeline: str, model: str,
                  features: list[dict[str, Any]], rows: int, reference_rows: int,
                  where: str = "", at: float | None = None
                  ) -> tuple[dict[str, Any], list[alerting.Event], list[dict[str, Any]]]:
    """A tabular pipeline's drift check (one dict per feature: feature, psi, p_value,
    drifted) as a drift row of endpoint `tabular.<pipeline>`, through the alert rules."""
    at = time.time() if at is None else at
    drifted = [f["feature"] for f in features if f["drifted"]]
    p_values = [f["p_value"] for f in features]
    row = {"endpoint": f"tabular.{pipeline}", "window_s": 0, "window_start": at,
           "kind": "tabular", "statistic": float(len(drifted)),
           "p_value": min(p_values) if p_values else None, "n_current": rows,
           "n_reference": reference_rows, "computed_at": at,
           "detail": {"model": model, "drifted": drifted,
                      "psi": {f["feature"]: round(f["psi"], 4) for f in features}}}
    store.save_drift(row)
    row = {**row, "variant": "", "requests": rows, "features_drifted": len(drifted),
           "where": where or f"in the check at {at:.0f}",
           "max_psi": max((f["psi"] for f in features), default=None),
           "min_drift_p": row["p_value"]}
    events, actions = check(store, cfg, [row], at)
    return row, events, actions


def _drift(store: Store, cfg: MonitorConfig, endpoint: str, ws: float, w: int,
           embed: Embed | None) -> dict[str, Any] | None:
    """Query and answer drift of one endpoint's window against the windows before it."""
    d = cfg.drift
    current = store.questions(endpoint=endpoint, since=ws, until=ws + w, limit=d.sample)
    reference = store.questions(endpoint=endpoint, since=ws - d.reference_windows * w,
                                until=ws, limit=d.sample)
    if len(current) < d.min_questions or len(reference) < d.min_questions:
        return None
    detail: dict[str, Any] = {"unanswerable": unanswerable(current, cfg.similarity_floor)}
    answers = answer_drift([r["answer"] or "" for r in reference],
                           [r["answer"] or "" for r in current], cfg.refusals or REFUSALS)
    detail["answers"] = answers
    statistic: float | None = None
    p_value: float | None = None
    cur_q = [q for q in (question_of(r["messages"]) for r in current) if q]
    ref_q = [q for q in (question_of(r["messages"]) for r in reference) if q]
    if embed is not None and min(len(cur_q), len(ref_q)) >= d.min_questions:
        vectors = embed(ref_q + cur_q)
        result = mmd_test(vectors[:len(ref_q)], vectors[len(ref_q):],
                          permutations=d.permutations, seed=int(ws))
        statistic, p_value = result.statistic, result.p_value
    row = {"endpoint": endpoint, "window_s": w, "window_start": ws, "kind": "query",
           "statistic": statistic, "p_value": p_value, "n_current": len(current),
           "n_reference": len(reference), "detail": detail, "computed_at": time.time()}
    store.save_drift(row)
    # a row for the drift rules: the endpoint's, with no variant
    return {**row, "variant": "", "requests": len(current),
            "query_drift_p": p_value,
            "answer_length_drift_p": answers["length_p"],
            "refusal_drift_p": answers["refusal_p"]}


def embedder(ref: str | None = None) -> Embed:
    """Question embeddings with the project's embedding model (loaded on first use)."""
    from llmops import hub
    from llmops.index.embed import encode

    model: list[Any] = []

    def embed(texts: list[str]) -> np.ndarray:
        if not model:
            model.append(hub.load_embedder(ref))
        return encode(model[0], texts)

    return embed


def mlflow_tracker(settings: Any = None) -> Callable[[list[dict[str, Any]]], str | None]:
    """Log window rows to one run of the `monitor` experiment: a metric per endpoint,
    variant and measure, one point per window (its start as the step, in minutes)."""
    def track(rows: list[dict[str, Any]]) -> str | None:
        from mlflow.entities import Metric

        from llmops.registry import Tracking

        tracking = Tracking(settings)
        starts = sorted({r["window_start"] for r in rows})
        with tracking.run("monitor", f"windows {starts[0]:.0f}-{starts[-1]:.0f}",
                          tags={"llmops.window_s": rows[0]["window_s"]}) as run:
            metrics = [Metric(f"{r['endpoint']}.{r['variant'] or 'all'}.{k}", float(r[k]),
                              int(r["window_start"] * 1000), int(r["window_start"] // 60))
                       for r in rows for k in TRACKED if r.get(k) is not None]
            for i in range(0, len(metrics), 1000):  # MLflow's batch limit
                run.client.log_batch(run.run_id, metrics=metrics[i:i + 1000])
            return run.run_id

    return track
