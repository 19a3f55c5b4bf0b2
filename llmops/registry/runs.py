"""MLflow runs through the client: the experiment of an area, a run as a context, what it logs.

`Tracking` holds the settings and the one lazily made `MlflowClient`; the
`Registry` (in `client.py`) extends it with registered models. Every run is
tagged with the git commit of the project it ran from.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmops.config import Settings, get_settings
from llmops.registry.refs import TAG_DIRTY

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient


def git_commit(project_dir: Path) -> tuple[str, bool]:
    """(HEAD commit, whether the work tree has uncommitted changes); 'unknown' outside git."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=project_dir, capture_output=True, text=True,
            check=True, timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=project_dir,
            capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()
        return sha, bool(dirty)
    except (OSError, subprocess.SubprocessError):
        return "unknown", False


class RunLog:
    """An MLflow run being written, through the client (thread-safe, no global state)."""

    def __init__(self, client: MlflowClient, run_id: str, experiment_id: str) -> None:
        self.client = client
        self.run_id = run_id
        self.experiment_id = experiment_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        for key, value in params.items():
            self.client.log_param(self.run_id, key, str(value)[:6000])

    def log_batch(
        self,
        *,
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> None:
        """Params, metrics and tags in one round trip (strings: params as given, else JSON)."""
        from mlflow.entities import Metric, Param, RunTag

        now = int(time.time() * 1000)
        self.client.log_batch(
            self.run_id,
            metrics=[Metric(k, float(v), now, 0) for k, v in (metrics or {}).items()],
            params=[Param(k, (v if isinstance(v, str) else json.dumps(v, sort_keys=True))[:6000])
                    for k, v in sorted((params or {}).items())],
            tags=[RunTag(k, str(v)) for k, v in (tags or {}).items()],
        )

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Metrics at one step of a curve (a training loss, say)."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, step)
                                                    for k, v in metrics.items()])

    def log_dict(self, data: Any, artifact_file: str) -> None:
        self.client.log_dict(self.run_id, data, artifact_file)

    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, artifact_file)

    def log_table(self, df: pd.DataFrame, artifact_file: str) -> None:
        self.client.log_table(self.run_id, df, artifact_file)

    def log_artifacts(self, local_dir: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifacts(self.run_id, str(local_dir), artifact_path)

    def log_artifact(self, local_path: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(local_path), artifact_path)


class Tracking:
    """Experiments and runs on the tracking URI of the settings."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self._client: MlflowClient | None = None

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            # MLflow draws a progress bar on stderr for every small download.
            os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
            from mlflow import MlflowClient

            self.settings.ensure_home()
            self._client = MlflowClient(
                tracking_uri=self.settings.mlflow_tracking_uri,
                registry_uri=self.settings.mlflow_registry_uri,
            )
        return self._client

    def experiment_id(self, area: str) -> str:
        """The experiment `<prefix>/<area>`, created on first use."""
        from mlflow.exceptions import MlflowException

        name = f"{self.settings.experiment_prefix}/{area}"
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            return str(exp.experiment_id)
        location = f"{self.settings.artifact_root}/{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}"
        try:
            return str(self.client.create_experiment(name, artifact_location=location))
        except MlflowException:  # another thread or process created it first
            exp = self.client.get_experiment_by_name(name)
            if exp is None:
                raise
            return str(exp.experiment_id)

    @contextlib.contextmanager
    def run(
        self, area: str, run_name: str, *, tags: Mapping[str, Any] | None = None,
        resume: str | None = None,
    ) -> Iterator[RunLog]:
        """An MLflow run in experiment `<prefix>/<area>`; FAILED if the block raises.

        `resume`: the id of an earlier run of this experiment to go on writing (a job
        resumed after it was killed), instead of a new run.
        """
        exp_id = self.experiment_id(area)
        if resume is not None:
            found = self.client.get_run(resume)
            self.client.update_run(resume, status="RUNNING")
            run_id, exp_id = resume, str(found.info.experiment_id)
        else:
            sha, dirty = git_commit(self.settings.project_dir)
            all_tags = {"mlflow.source.git.commit": sha, TAG_DIRTY: str(dirty).lower()}
            all_tags.update({k: str(v) for k, v in (tags or {}).items()})
            run_id = self.client.create_run(exp_id, run_name=run_name, tags=all_tags).info.run_id
        log = RunLog(self.client, run_id, exp_id)
        try:
            yield log
        except BaseException:
            self.client.set_terminated(run_id, "FAILED")
            raise
        self.client.set_terminated(run_id, "FINISHED")
