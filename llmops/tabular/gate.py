"""Scoring for `llmops gate tabular.<name>`: each version on the pipeline's held-out rows.

`eval/gates.yaml` names the pipeline file as the gate's `dataset`. The hold-out is the
rows of the entities held out by hash (`model.split`) in the training set of the gold
table now: the same entities for every version, none of which any version trained on,
so the candidate and production are compared on the same rows. Registered with the
gate (`llmops.eval.gates.EVALUATORS`) by the command floor.
"""

from __future__ import annotations

from typing import Any

from llmops.config import Settings, get_settings
from llmops.registry import Registry, Tracking, VersionInfo, get_registry
from llmops.tabular.config import load_pipeline
from llmops.tabular.model import evaluate
from llmops.tabular.pipeline import holdout


class HoldoutScorer:
    """Scores versions of `tabular.<name>` on its pipeline's held-out rows."""

    def __init__(self, name: str, spec: Any, *, settings: Settings | None = None,
                 registry: Registry | None = None) -> None:
        self.settings = settings or get_settings()
        self.registry = registry or get_registry()
        pipeline = load_pipeline(str(self.settings.project_dir / spec.dataset), self.settings)
        gold_version, self.holdout = holdout(pipeline, self.settings)
        self.name = str(spec.dataset)
        self.version = f"gold-v{gold_version}-{len(self.holdout)}-rows"

    def __call__(self, version: VersionInfo) -> dict[str, Any]:
        import mlflow.sklearn

        model = mlflow.sklearn.load_model(str(self.registry.download(version.name,
                                                                     version.version)))
        scores = evaluate(model, self.holdout)
        with Tracking(self.settings).run("tabular", f"gate evaluation {version.ref}",
                                         tags={"llmops.model": version.ref}) as run:
            run.log_batch(params={"model": version.ref, "holdout": self.version},
                          metrics={f"holdout_{k}": v for k, v in scores.items()})
        return {"id": f"holdout {self.version}", "run_id": run.run_id,
                "summary": {k: {"mean": v, "failures": 0} for k, v in scores.items()}}
