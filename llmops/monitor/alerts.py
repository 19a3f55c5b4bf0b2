"""Alerts from thresholds, and the triggers they start.

An alert opens when a rule's metric crosses its threshold in a window and resolves in
the first later window where it does not; while it is open the same condition does not
alert again. Opening one writes a row, logs a line, posts to the webhook (the body
signed with HMAC-SHA256 in `X-Llmops-Signature`) and may start a trigger. A trigger
runs an llmops command (`index refresh`, `gate`, `finetune run`) or a program of
yours; `tabular-retrain` trains a tabular pipeline and gates the new version. At most
once per cool-down, or in dry-run mode only records what it would run;
every run or skip is a row with what happened and why.

Times are the windows' own (the end of the window that opened an alert), so replaying
an old log keeps its cool-downs as they would have been.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import httpx

from llmops.monitor.config import AlertRule, MonitorConfig, TriggerConfig, row_kind
from llmops.store import Store

log = logging.getLogger("llmops.monitor")


def metric_value(rule: AlertRule, row: dict[str, Any]) -> float | None:
    """The rule's metric in a window row, or None when the window cannot say."""
    requests = row.get("requests", 0)
    if requests < rule.min_requests:
        return None
    m = rule.metric
    if m == "thumbs_up_rate":
        votes = row.get("votes", 0)
        return row["up"] / votes if votes and votes >= max(1, rule.min_votes) else None
    if m in ("error_rate", "refusal_rate", "empty_rate"):
        part = {"error_rate": "errors", "refusal_rate": "refusals", "empty_rate": "empty"}[m]
        return row[part] / requests if requests else None
    if m == "low_similarity_rate":
        return row["low_similarity"] / row["retrieved"] if row.get("retrieved") else None
    value = row.get(m)
    return None if value is None else float(value)


@dataclass
class Event:
    kind: str  # opened, resolved
    alert: dict[str, Any]


def evaluate(store: Store, cfg: MonitorConfig, rows: list[dict[str, Any]],
             window_end: float) -> list[Event]:
    """Open and resolve alerts for one window's rows (each rule against each row)."""
    open_now = {(a["rule"], a["endpoint"], a["variant"]): a
                for a in store.list_alerts(open_only=True)}
    events: list[Event] = []
    for rule in cfg.alerts:
        for row in rows:
            if rule.endpoint not in (None, row["endpoint"]):
                continue
            if rule.variant not in (None, row["variant"]):
                continue
            if row_kind(rule.metric) != row.get("kind", "window"):
                continue  # drift rows answer drift rules; window rows the others
            value = metric_value(rule, row)
            if value is None:
                continue
            key = (rule.name, row["endpoint"], row["variant"])
            current = open_now.get(key)
            if rule.breached(value) and current is None:
                side = "above" if rule.above is not None else "below"
                message = (f"{rule.name}: {rule.metric} = {value:.4g} is {side} "
                           f"{rule.threshold:g} on {row['endpoint']}"
                           f"{'/' + row['variant'] if row['variant'] else ''} "
                           + (row.get("where") or
                              f"in the window starting {row['window_start']:.0f}"))
                alert = {"rule": rule.name, "endpoint": row["endpoint"],
                         "variant": row["variant"], "metric": rule.metric, "value": value,
                         "threshold": rule.threshold, "window_start": row["window_start"],
                         "opened_at": window_end, "message": message}
                alert["id"] = store.open_alert(**alert)
                open_now[key] = alert
                log.warning("alert opened: %s", message)
                events.append(Event("opened", alert))
            elif current is not None and not rule.breached(value):
                store.resolve_alert(current["id"], window_end)
                current = {**current, "resolved_at": window_end}
                del open_now[key]
                log.info("alert resolved: %s", current["message"])
                events.append(Event("resolved", current))
    return events


def notify(cfg: MonitorConfig, event: Event) -> str | None:
    """Post an alert event to the webhook, signed; the error text if it failed."""
    hook = cfg.webhook
    if hook is None:
        return None
    body = json.dumps({"event": event.kind, "alert": event.alert}, sort_keys=True,
                      default=str).encode()
    headers = {"content-type": "application/json"}
    secret = os.environ.get(hook.secret_env) if hook.secret_env else None
    if secret:
        mac = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        headers["x-llmops-signature"] = f"sha256={mac}"
    try:
        r = httpx.post(hook.url, content=body, headers=headers, timeout=hook.timeout_s)
        r.raise_for_status()
    except httpx.HTTPError as exc:
        log.error("webhook %s failed: %s", hook.url, exc)
        return f"{type(exc).__name__}: {exc}"
    return None


def commands_of(trigger: TriggerConfig) -> list[list[str]]:
    """The commands a trigger runs, in order (each only if the one before succeeded)."""
    llmops = [sys.executable, "-m", "llmops"]
    if trigger.action == "index-refresh":
        return [[*llmops, "index", "refresh"]]
    if trigger.action == "eval-gate":
        chain = trigger.chain or ""
        chain = chain if chain.startswith("chain.") else f"chain.{chain}"
        ref = f"{chain}/{trigger.candidate}" if trigger.candidate.isdigit() else \
            f"{chain}@{trigger.candidate}"
        return [[*llmops, "eval", "run", ref, "--dataset", str(trigger.dataset)],
                [*llmops, "gate", chain, "--candidate", trigger.candidate]]
    if trigger.action == "finetune":
        return [[*llmops, "finetune", "run", str(trigger.recipe)]]
    if trigger.action == "tabular-retrain":  # train to staging, then gate it
        return [[*llmops, "tabular", "train", str(trigger.pipeline)],
                [*llmops, "gate", f"tabular.{trigger.pipeline}", "--candidate", "staging"]]
    return [list(trigger.argv or [])]


def fire(store: Store, cfg: MonitorConfig, name: str, alert: dict[str, Any],
         at: float) -> dict[str, Any]:
    """Run (or skip, or dry-run) trigger `name` for an alert; the action's record."""
    trigger = cfg.triggers[name]
    commands = commands_of(trigger)
    shown = " && ".join(" ".join(argv) for argv in commands)
    last = next((a for a in reversed(store.list_actions(name))
                 if a["status"] in ("done", "failed", "dry-run")), None)
    base = {"trigger": name, "alert_id": alert.get("id"), "started_at": at,
            "dry_run": trigger.dry_run}
    if last is not None and at - last["started_at"] < trigger.cooldown_s:
        wait = trigger.cooldown_s - (at - last["started_at"])
        detail = (f"cooling down: ran at {last['started_at']:.0f} ({last['status']}), "
                  f"{wait:.0f} s of {trigger.cooldown_s} s left; alert: {alert['message']}")
        action_id = store.record_action(**base, status="cooling", detail=detail,
                                        finished_at=at)
        return {**base, "id": action_id, "status": "cooling", "detail": detail}
    if trigger.dry_run:
        detail = f"dry run: would run {shown}; alert: {alert['message']}"
        action_id = store.record_action(**base, status="dry-run", detail=detail,
                                        finished_at=at)
        log.warning("trigger %s (dry run): %s", name, detail)
        return {**base, "id": action_id, "status": "dry-run", "detail": detail}
    action_id = store.record_action(**base, status="running", detail=f"running {shown}")
    status, lines = "done", [f"alert: {alert['message']}"]
    for argv in commands:
        try:
            done = subprocess.run(argv, capture_output=True, text=True,
                                  timeout=trigger.timeout_s, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            status = "failed"
            lines.insert(0, f"could not run {' '.join(argv)}: {exc}")
            break
        lines.append(f"ran {' '.join(argv)}: exit {done.returncode}\n"
                     f"{(done.stdout + done.stderr)[-3000:]}")
        if done.returncode != 0:
            status = "failed"
            break
    detail = "\n".join(lines)
    if status == "done":
        detail = f"ran {shown}\n{detail}"
    store.finish_action(action_id, status=status, detail=detail)
    log.warning("trigger %s %s: %s", name, status, detail.splitlines()[0])
    return {**base, "id": action_id, "status": status, "detail": detail}
