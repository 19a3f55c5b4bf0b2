"""The `llmops` command: `llmops <area> <verb>`, one Typer sub-app per area.

Errors of llmops are translated here once: one line on stderr, a non-zero exit.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import typer
from typer.core import TyperGroup

from llmops.errors import LlmopsError


class _TranslatingGroup(TyperGroup):
    """Turns an LlmopsError from any command into one line on stderr and its exit code."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except LlmopsError as exc:
            typer.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)


app = typer.Typer(
    name="llmops", help="The lifecycle of LLM prompts and chains.", no_args_is_help=True,
    pretty_exceptions_enable=False, cls=_TranslatingGroup,
)


@app.callback()
def _main(
    profile: str = typer.Option(
        None, "--profile", "-p", help="settings profile: dev, staging or prod",
        envvar="LLMOPS_PROFILE",
    ),
) -> None:
    from llmops.config import get_settings

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    get_settings(profile)  # validate the settings before any command runs


def _tabular_scorer(name: str, spec: Any) -> Any:
    from llmops.tabular.gate import HoldoutScorer

    return HoldoutScorer(name, spec)


def _tabular_drift_alerts(pipeline: str, check: Any) -> list[str]:
    """A tabular drift check through the monitor's alert rules and triggers."""
    from llmops.config import get_settings
    from llmops.monitor.config import load_monitor_config
    from llmops.monitor.run import tabular_drift
    from llmops.store import Store

    cfg = load_monitor_config(get_settings().project_dir)
    store = Store.open()
    try:
        _, events, actions = tabular_drift(
            store, cfg, pipeline=pipeline, model=check.model, rows=check.batch_rows,
            reference_rows=check.reference_rows,
            where=f"in the {check.batch_rows} rows of gold version {check.gold_version} "
                  f"(against the training set of {check.model})",
            features=[{"feature": d.feature, "psi": d.psi, "p_value": d.p_value,
                       "drifted": d.drifted} for d in check.features])
    finally:
        store.close()
    return ([f"  alert {e.kind}: {e.alert['message']}" for e in events]
            + [f"  trigger {a['trigger']}: {a['status']}: {a['detail'].splitlines()[0]}"
               for a in actions])


def _mount() -> None:
    """Each area's sub-app (or command), in the order of `llmops --help`."""
    from llmops.chains.cli import app as chains_app
    from llmops.demo import demo
    from llmops.eval.ab_cli import app as ab_app
    from llmops.eval.cli import app as eval_app
    from llmops.eval.cli import gate
    from llmops.eval.gates import EVALUATORS
    from llmops.finetune.cli import app as finetune_app
    from llmops.index.cli import app as index_app
    from llmops.monitor.cli import monitor_app
    from llmops.prompts.cli import app as prompts_app
    from llmops.registry.cli import app as registry_app
    from llmops.scaffold.cli import init
    from llmops.serving.cli import feedback_app, keys_app, serve
    from llmops.tabular.cli import DRIFT_SINKS, tabular_app
    from llmops.trace import trace_cmd

    EVALUATORS["tabular"] = _tabular_scorer  # the gate scores tabular models on held-out rows
    DRIFT_SINKS[:] = [_tabular_drift_alerts]  # tabular drift goes through the monitor's alerts

    app.command("init")(init)
    app.add_typer(registry_app, name="registry")
    app.command("trace")(trace_cmd)
    app.add_typer(prompts_app, name="prompts")
    app.add_typer(chains_app, name="chains")
    app.add_typer(index_app, name="index")
    app.command("serve")(serve)
    app.add_typer(keys_app, name="keys")
    app.add_typer(feedback_app, name="feedback")
    app.add_typer(finetune_app, name="finetune")
    app.add_typer(eval_app, name="eval")
    app.command("gate")(gate)
    app.add_typer(ab_app, name="ab")
    app.add_typer(monitor_app, name="monitor")
    app.add_typer(tabular_app, name="tabular")
    app.command("demo")(demo)


_mount()


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
