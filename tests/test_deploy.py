"""The production topology in deploy/ (compose file, Kubernetes manifests): they parse,
every LLMOPS_* variable they set names a setting of llmops.config, and the values they
give are valid settings together."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from llmops.config import Settings

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
SECRET = "postgresql+psycopg://llmops:secret@postgres:5432/llmops"  # for secretKeyRef values


def _compose() -> dict[str, Any]:
    data = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert {"gateway", "mlflow", "postgres", "chroma", "redis", "llm"} <= set(data["services"])
    return data


def _manifests() -> list[dict[str, Any]]:
    docs = [d for f in sorted((DEPLOY / "k8s").glob("*.yaml"))
            for d in yaml.safe_load_all(f.read_text()) if d]
    for d in docs:
        assert {"apiVersion", "kind", "metadata"} <= set(d), d
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert {("Deployment", "gateway"), ("Deployment", "mlflow"), ("StatefulSet", "chroma"),
            ("Deployment", "redis"), ("CronJob", "monitor")} <= kinds
    return docs


def _compose_env() -> list[dict[str, str]]:
    envs = []
    for service in _compose()["services"].values():
        env = service.get("environment") or {}
        if isinstance(env, dict):
            envs.append({k: str(v).replace("${POSTGRES_PASSWORD}", "secret")
                         for k, v in env.items()})
    return envs


def _k8s_env() -> list[dict[str, str]]:
    docs = _manifests()
    config = {d["metadata"]["name"]: d["data"] for d in docs if d["kind"] == "ConfigMap"}
    envs = []

    def containers(d: dict[str, Any]) -> list[dict[str, Any]]:
        spec = d.get("spec", {})
        pod = (spec.get("jobTemplate", {}).get("spec", {}).get("template", {})
               or spec.get("template", {}))
        return list(pod.get("spec", {}).get("containers", []))

    for d in docs:
        for c in containers(d):
            env: dict[str, str] = {}
            for ref in c.get("envFrom", []):
                env.update(config[ref["configMapRef"]["name"]])
            for e in c.get("env", []):
                env[e["name"]] = e.get("value", SECRET)
            envs.append(env)
    return envs


def _field(name: str) -> bool:
    """Whether LLMOPS_A__B names the setting a.b."""
    model: type[BaseModel] = Settings
    parts = name.removeprefix("LLMOPS_").lower().split("__")
    for part in parts[:-1]:
        field = model.model_fields.get(part)
        if field is None or not (isinstance(field.annotation, type)
                                 and issubclass(field.annotation, BaseModel)):
            return False
        model = field.annotation
    return parts[-1] in model.model_fields


@pytest.mark.parametrize("source", ["compose", "k8s"])
def test_every_variable_is_a_setting_and_the_values_validate(
        source: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    envs = _compose_env() if source == "compose" else _k8s_env()
    names = {k for env in envs for k in env if k.startswith("LLMOPS_")}
    assert {"LLMOPS_TRACKING_URI", "LLMOPS_GATEWAY__REDIS_URL", "LLMOPS_VECTOR__MODE"} <= names
    unknown = sorted(n for n in names if not _field(n))
    assert not unknown, f"{source}: not settings of llmops.config: {unknown}"
    for env in envs:
        if not any(k.startswith("LLMOPS_") for k in env):
            continue
        for k in [k for k in os.environ if k.startswith("LLMOPS_")]:
            monkeypatch.delenv(k)
        for k, v in env.items():
            if k.startswith("LLMOPS_"):
                monkeypatch.setenv(k, v)
        monkeypatch.setenv("LLMOPS_PROJECT_DIR", str(REPO))  # the image's /srv/project
        monkeypatch.setenv("LLMOPS_HOME", str(tmp_path / "home"))
        s = Settings()
        assert s.profile == "prod" and s.vector.mode == "server"
        assert s.tracking_uri == "http://mlflow:5000"
        if "LLMOPS_LOCK_URL" in env:
            assert s.lock_database_url is not None and "postgres" in s.lock_database_url


def test_the_flagged_mistake_is_caught() -> None:
    assert _field("LLMOPS_GATEWAY__REDIS_URL") and _field("LLMOPS_LOCK_URL")
    assert not _field("LLMOPS_GATEWAY__REDIS") and not _field("LLMOPS_VECTOR__HOSTNAME")
    assert not _field("LLMOPS_TRACKING_URI__X")
