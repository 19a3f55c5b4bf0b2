"""Copying versions between two profiles' registries (`llmops registry copy`): two separate
MLflow SQLite stores, staging and prod, real prompts and a real chain (fake backend)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

import llmops.chains as chains
import llmops.prompts as prompts
from llmops.config import Settings, reset_settings
from llmops.errors import (
    AliasConflictError,
    ConfigError,
    NotFoundError,
    RegistryError,
    TransferError,
)
from llmops.registry import Registry
from llmops.registry.transfer import (
    TAG_FROM_NAME,
    TAG_FROM_PINS,
    TAG_FROM_PROFILE,
    TAG_FROM_REGISTRY,
    TAG_FROM_VERSION,
    copy_version,
    profile_settings,
    redact,
)
from tests.cli_helpers import cli
from tests.conftest import CHAT_YAML, REPO


@dataclass
class Envs:
    project: Path
    staging: Settings
    prod: Settings
    src: Registry
    dst: Registry


@pytest.fixture
def envs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mlflow_template: Path) -> Envs:
    """A project whose staging and prod profiles each have a home and an MLflow store;
    staging holds prompt.assistant 1 and 2 (staging -> 2) and chain.chat 1 pinning 2."""
    project = tmp_path / "project"
    (project / "chains").mkdir(parents=True)
    (project / "prompts").mkdir()
    for profile in ("staging", "prod"):
        (tmp_path / profile).mkdir()
        shutil.copy(mlflow_template, tmp_path / profile / "mlflow.db")
    (project / "llmops.yaml").write_text(
        f"profiles:\n  staging: {{home: {tmp_path / 'staging'}}}\n"
        f"  prod: {{home: {tmp_path / 'prod'}}}\n")
    shutil.copy(REPO / "chains" / "chat.py", project / "chains" / "chat.py")
    (project / "chains" / "chat.yaml").write_text(CHAT_YAML)
    spec = project / "prompts" / "assistant.yaml"
    shutil.copy(REPO / "prompts" / "assistant.yaml", spec)
    monkeypatch.setenv("LLMOPS_PROJECT_DIR", str(project))
    monkeypatch.setenv("LLMOPS_ACTOR", "carol@ci")
    for var in ("LLMOPS_HOME", "LLMOPS_PROFILE", "LLMOPS_TRACKING_URI", "LLMOPS_REGISTRY_URI",
                "LLMOPS_ARTIFACT_ROOT"):
        monkeypatch.delenv(var, raising=False)
    reset_settings()
    staging, prod = profile_settings("staging"), profile_settings("prod")
    src, dst = Registry(staging), Registry(prod)
    prompts.push([spec], registry=src)
    spec.write_text(spec.read_text().replace("max_tokens: 160", "max_tokens: 80"))
    prompts.push([spec], registry=src)
    prompts.promote("assistant", 2, "staging", registry=src)
    assert chains.log(project / "chains" / "chat.py", registry=src).version == 1
    yield Envs(project, staging, prod, src, dst)
    reset_settings()


def state(reg: Registry) -> dict[str, Any]:
    """Versions (aliases, tags), audit and runs of every model: all a copy could change."""
    exps = [e.experiment_id for e in reg.client.search_experiments()]
    return {
        "models": {name: ([v.to_dict() for v in reg.list_versions(name)],
                          [r.to_dict() for r in reg.history(name)])
                   for name in reg.list_models()},
        "runs": len(reg.client.search_runs(exps)) if exps else 0,
    }


def copy(envs: Envs, ref: str, **kw: Any) -> Any:
    return copy_version(ref, source=envs.staging, dest=envs.prod, **kw)


def without_origin(tags: Any) -> dict[str, str]:
    return {k: v for k, v in tags.items() if not k.startswith("llmops.copied_from.")}


def test_prompt_copy_keeps_lineage_records_source_and_audits_both(envs: Envs) -> None:
    result = copy(envs, "prompt.assistant@staging", reason="release 7")
    assert result.version.to_dict() == {"source": "prompt.assistant/2",
                                        "dest": "prompt.assistant/1", "created": True}
    src, dst = envs.src.get("prompt.assistant", 2), envs.dst.get("prompt.assistant", 1)
    assert without_origin(dst.tags) == dict(src.tags)  # hash, git commit, kind, prompt tags
    assert dst.content_hash == src.content_hash and dst.tags["llmops.git_commit"]
    assert dst.description == src.description
    assert {k: dst.tags[k] for k in (TAG_FROM_PROFILE, TAG_FROM_REGISTRY, TAG_FROM_NAME,
                                     TAG_FROM_VERSION)} == {
        TAG_FROM_PROFILE: "staging", TAG_FROM_REGISTRY: envs.staging.mlflow_registry_uri,
        TAG_FROM_NAME: "prompt.assistant", TAG_FROM_VERSION: "2"}
    assert dst.aliases == ()  # no alias moves unless asked
    # the files travelled: the destination's copy is in its own artifact store
    assert prompts.load("assistant/1", registry=envs.dst).spec == prompts.load(
        "assistant/2", registry=envs.src).spec

    exported = envs.src.history("prompt.assistant")[-1]
    assert (exported.action, exported.to_version, exported.actor) == ("export", 2, "carol@ci")
    assert exported.reason == "exported to prod as prompt.assistant/1: release 7"
    [imported] = envs.dst.history("prompt.assistant")
    assert (imported.action, imported.to_version) == ("import", 1)
    assert imported.reason.startswith("imported from staging prompt.assistant/2 (sqlite:///")
    shown = cli("--profile", "prod", "registry", "history", "prompt.assistant")
    assert shown.stdout.startswith("#1 ") and " carol@ci import version 1  (imported from " \
        "staging prompt.assistant/2" in shown.stdout


def test_chain_copy_takes_its_pinned_prompt_and_repins_it(envs: Envs) -> None:
    result = copy(envs, "chain.chat/1")
    assert [p.to_dict() for p in result.pins] == [
        {"source": "prompt.assistant/2", "dest": "prompt.assistant/1", "created": True}]
    assert result.version.dest == "chain.chat/1" and result.version.created
    src, dst = envs.src.get("chain.chat", 1), envs.dst.get("chain.chat", 1)
    # prod's prompt 1 is staging's 2: the pin says prod's number, the origin keeps staging's
    assert dst.tags["lineage.prompt_version"] == "1"
    assert dst.tags[TAG_FROM_PINS] == "prompt.assistant/2"
    assert without_origin(dst.tags) == {**src.tags, "lineage.prompt_version": "1"}
    config = yaml.safe_load((envs.dst.download("chain.chat", 1) / "MLmodel").read_text())[
        "flavors"]["python_function"]["config"]
    assert config["prompt"] == "prompt.assistant/1"
    assert config["content_hash"] == src.content_hash == dst.content_hash
    answer = chains.load("chain.chat/1", registry=envs.dst).invoke("What is a tuple?")
    assert answer.answer == chains.load("chain.chat/1", registry=envs.src).invoke(
        "What is a tuple?").answer
    assert answer.lineage.prompt_version == 1
    assert [r.action for r in envs.dst.history("prompt.assistant")] == ["import"]
    assert [r.action for r in envs.dst.history("chain.chat")] == ["import"]
    assert [r.action for r in envs.src.history("chain.chat")] == ["export"]


def test_chain_whose_prompt_keeps_its_number_is_copied_as_it_is(envs: Envs) -> None:
    copy(envs, "prompt.assistant/1")
    copy(envs, "prompt.assistant/2")  # prod now numbers them as staging does
    result = copy(envs, "chain.chat/1")
    assert [(p.dest, p.created) for p in result.pins] == [("prompt.assistant/2", False)]
    src, dst = envs.src.get("chain.chat", 1), envs.dst.get("chain.chat", 1)
    assert without_origin(dst.tags) == dict(src.tags)
    mlmodel = envs.dst.download("chain.chat", 1) / "MLmodel"
    assert mlmodel.read_text() == (envs.src.download("chain.chat", 1) / "MLmodel").read_text()


def test_copying_again_returns_the_copy_and_changes_nothing(envs: Envs) -> None:
    first = copy(envs, "chain.chat")  # the latest version
    before = (state(envs.src), state(envs.dst))
    again = copy(envs, "chain.chat/1")
    assert (again.version.dest, again.version.created, again.pins) == (first.version.dest, False, ())
    assert (state(envs.src), state(envs.dst)) == before
    assert copy(envs, "prompt.assistant/2").version.to_dict() == {
        "source": "prompt.assistant/2", "dest": "prompt.assistant/1", "created": False}


def test_dry_run_says_what_would_happen_and_changes_nothing(envs: Envs) -> None:
    before = (state(envs.src), state(envs.dst))
    plan = copy(envs, "chain.chat/1", alias="production", expect=None, dry_run=True)
    assert plan.dry_run and plan.version.to_dict() == {
        "source": "chain.chat/1", "dest": None, "created": True}
    assert plan.lines() == [
        "prompt.assistant/2 (staging) would be copied to prod as a new version",
        "chain.chat/1 (staging) would be copied to prod as a new version",
        "prod production: would move unset -> the new version",
    ]
    assert (state(envs.src), state(envs.dst)) == before
    with pytest.raises(AliasConflictError, match="not version 3 as expected; nothing copied"):
        copy(envs, "chain.chat/1", alias="production", expect=3, dry_run=True)
    copy(envs, "chain.chat/1")
    plan = copy(envs, "chain.chat/1", alias="production", dry_run=True)
    assert plan.lines() == ["chain.chat/1 (staging) is already in prod as chain.chat/1",
                            "prod production: would move unset -> chain.chat/1"]
    assert envs.dst.list_versions("chain.chat")[0].aliases == ()


def test_alias_move_in_the_destination_is_compare_and_set(envs: Envs) -> None:
    first = copy(envs, "prompt.assistant/1", alias="production", expect=None)
    assert (first.alias_from, first.alias_moved) == (None, True)
    assert envs.dst.resolve("prompt.assistant@production").version == 1
    move = envs.dst.history("prompt.assistant")[-1]
    assert (move.action, move.alias, move.from_version, move.to_version) == (
        "move", "production", None, 1)
    assert move.reason == "copied from staging prompt.assistant/1"

    before = (state(envs.src), state(envs.dst))
    with pytest.raises(AliasConflictError,
                       match=r"prompt.assistant@production in prod is version 1, not unset"):
        copy(envs, "prompt.assistant/2", alias="production", expect=None)
    assert (state(envs.src), state(envs.dst)) == before  # refused before anything was copied

    second = copy(envs, "prompt.assistant/2", alias="production", expect=1, reason="go")
    assert (second.version.dest, second.alias_from, second.alias_moved) == (
        "prompt.assistant/2", 1, True)
    assert envs.dst.resolve("prompt.assistant@production").version == 2
    assert [(r.action, r.alias, r.reason) for r in envs.dst.history("prompt.assistant")][-2:] == [
        ("import", None, "imported from staging prompt.assistant/2 "
         f"({envs.staging.mlflow_registry_uri}): go"),
        ("move", "production", "go")]
    # a retry after success is a no-op, not a conflict
    before = state(envs.dst)
    retry = copy(envs, "prompt.assistant/2", alias="production", expect=1)
    assert (retry.version.created, retry.alias_moved) == (False, False)
    assert state(envs.dst) == before
    # a copy that prod archived is not promoted again by copying it
    envs.dst.archive("prompt.assistant", 1, "failed the prod gate")
    before = (state(envs.src), state(envs.dst))
    with pytest.raises(TransferError, match=r"prompt.assistant/1 is in prod already as "
                       r"prompt.assistant/1, which is archived there \(failed the prod gate\)"):
        copy(envs, "prompt.assistant/1", alias="production", dry_run=True)
    assert (state(envs.src), state(envs.dst)) == before


@pytest.mark.parametrize(
    ("case", "error", "words"),
    [
        ("unknown-profile", ConfigError, "profile 'qa' is unknown; allowed: dev, staging, prod"),
        ("same-registry", TransferError, "profiles staging and staging use the same registry"),
        ("missing-version", NotFoundError, "prompt.assistant has no version 9"),
        ("missing-alias", NotFoundError, "prompt.assistant has no alias 'production'"),
        ("missing-model", NotFoundError, "no registered model named 'chain.nope'"),
        ("bad-name", RegistryError, "bad registered model name 'assistant'"),
        ("archived", TransferError, r"prompt.assistant/1 is archived in staging \(leaks\); "
                                    "not copying it"),
        ("archived-pin", TransferError, r"chain.chat/1 pins prompt.assistant/2: "
                                        r"prompt.assistant/2 is archived"),
        ("bad-alias", TransferError, "bad alias 'latest'"),
    ],
)
def test_refusals_name_the_problem_and_change_nothing(
    envs: Envs, case: str, error: type[Exception], words: str
) -> None:
    envs.src.archive("prompt.assistant", 1, "leaks")
    if case == "archived-pin":
        envs.src.archive("prompt.assistant", 2, "leaks too")
    before = (state(envs.src), state(envs.dst))
    ref, source, kw = {
        "unknown-profile": ("prompt.assistant/2", None, {}),
        "same-registry": ("prompt.assistant/2", envs.staging, {}),
        "missing-version": ("prompt.assistant/9", envs.staging, {}),
        "missing-alias": ("prompt.assistant@production", envs.staging, {}),
        "missing-model": ("chain.nope/1", envs.staging, {}),
        "bad-name": ("assistant/1", envs.staging, {}),
        "archived": ("prompt.assistant/1", envs.staging, {}),
        "archived-pin": ("chain.chat/1", envs.staging, {}),
        "bad-alias": ("prompt.assistant/2", envs.staging, {"alias": "latest"}),
    }[case]
    with pytest.raises(error, match=words):
        if source is None:
            profile_settings("qa")
        dest = envs.staging if case == "same-registry" else envs.prod
        copy_version(ref, source=source or envs.staging, dest=dest, **kw)
    assert (state(envs.src), state(envs.dst)) == before


def test_cli_copy_dry_run_json_and_errors(envs: Envs) -> None:
    argv = ["registry", "copy", "chain.chat/1", "--from-profile", "staging", "--to-profile",
            "prod", "--alias", "production", "--expect", "none"]
    dry = cli(*argv, "--dry-run")
    assert dry.exit_code == 0, dry.stderr
    assert dry.stdout.splitlines()[-1] == (
        "dry run: prod production: would move unset -> the new version")
    assert not envs.dst.exists("chain.chat")
    done = cli(*argv, "--reason", "release 7")
    assert done.exit_code == 0, done.stderr
    assert done.stdout.splitlines() == [
        "prompt.assistant/2 (staging) copied to prod as prompt.assistant/1",
        "chain.chat/1 (staging) copied to prod as chain.chat/1",
        "prod production: moved unset -> chain.chat/1",
    ]
    again = cli(*argv[:-4], "--json").json()
    assert (again["dest"], again["created"], again["alias"]) == ("chain.chat/1", False, None)
    for args, words in [
        (["--from-profile", "qa"], "profile 'qa' is unknown"),
        (["--to-profile", "staging"], "use the same registry"),
        (["--expect", "x"], "--expect must be a version number or 'none', not 'x'"),
    ]:
        bad = list(argv)
        flag = args[0]
        if flag in bad:
            bad[bad.index(flag) + 1] = args[1]
        failed = cli(*bad)
        assert failed.exit_code != 0 and failed.stdout == ""
        assert failed.stderr.startswith("error: ") and words in failed.stderr, failed.stderr
        assert len(failed.stderr.splitlines()) == 1
    no_alias = cli("registry", "copy", "prompt.assistant/1", "--from-profile", "staging",
                   "--to-profile", "prod", "--expect", "1")
    assert no_alias.exit_code != 0 and "--expect needs --alias" in no_alias.stderr


def test_copy_loads_with_plain_pyfunc_from_the_destination_alone(envs: Envs) -> None:
    copy(envs, "chain.chat/1", alias="production", expect=None)
    expected = chains.load("chain.chat/1", registry=envs.src).invoke("What is a tuple?").answer
    shutil.rmtree(envs.staging.home_dir)  # the source registry and its artifacts are gone
    uri = envs.prod.mlflow_tracking_uri
    code = textwrap.dedent(f"""
        import json, mlflow, pandas as pd
        mlflow.set_tracking_uri({uri!r})
        mlflow.set_registry_uri({uri!r})
        prompt = mlflow.pyfunc.load_model("models:/prompt.assistant/1")
        chain = mlflow.pyfunc.load_model("models:/chain.chat@production")
        rendered = prompt.predict(pd.DataFrame({{"question": ["hi"]}}))
        out = chain.predict(pd.DataFrame({{"question": ["What is a tuple?"]}}))
        print(json.dumps([rendered[0][-1]["content"], out[0]["answer"],
                          out[0]["lineage"]["prompt_version"]]))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=dict(os.environ), timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rendered, answer, prompt_version = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "hi" in rendered
    assert (answer, prompt_version) == (expected, 1)


def test_redact_hides_passwords() -> None:
    assert redact("postgresql://mlflow:s3cret@db:5432/reg") == "postgresql://mlflow:***@db:5432/reg"
    assert redact("sqlite:////tmp/mlflow.db") == "sqlite:////tmp/mlflow.db"
