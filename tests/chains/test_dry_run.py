"""`llmops chains log --dry-run`: whether a new version would be registered; nothing changes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import llmops.chains as chains
import llmops.prompts as prompts
from llmops.config import Settings
from tests.cli_helpers import cli, snapshot
from tests.conftest import CHAT_YAML, REPO


@pytest.fixture
def chain_file(settings: Settings, tmp_path: Path) -> Path:
    folder = tmp_path / "chains"
    folder.mkdir()
    shutil.copy(REPO / "chains" / "chat.py", folder / "chat.py")
    (folder / "chat.yaml").write_text(CHAT_YAML)
    return folder / "chat.py"


def push_assistant(tmp_path: Path) -> None:
    shutil.copy(REPO / "prompts" / "assistant.yaml", tmp_path / "assistant.yaml")
    prompts.push([tmp_path / "assistant.yaml"])
    prompts.promote("assistant", 1, "staging")


def test_dry_run_before_the_prompt_is_registered(chain_file: Path) -> None:
    before = snapshot()
    result = cli("chains", "log", chain_file, "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [
        "chain.chat: would register version 1 (cannot pin yet: no registered model "
        "named 'prompt.assistant')", "dry run: nothing registered"]
    assert snapshot() == before


def test_dry_run_new_then_unchanged(chain_file: Path, tmp_path: Path) -> None:
    push_assistant(tmp_path)
    before = snapshot()
    new = cli("chains", "log", chain_file, "--dry-run", "--json").json()
    assert (new["name"], new["version"], new["created"], new["dry_run"]) == (
        "chain.chat", 1, True, True)
    assert new["lineage"]["prompt_version"] == 1
    assert snapshot() == before

    logged = chains.log(chain_file)
    assert (logged.version, logged.content_hash) == (1, new["content_hash"])
    registered = snapshot()
    same = cli("chains", "log", chain_file, "--dry-run")
    assert same.stdout.startswith(
        f"chain.chat: unchanged, version 1 (content {logged.content_hash[:12]} already registered)")
    chain_file.with_suffix(".yaml").write_text(CHAT_YAML.replace("max_tokens: 40", "max_tokens: 41"))
    changed = cli("chains", "log", chain_file, "--dry-run")
    assert changed.stdout.startswith("chain.chat: would register version 2 (new content ")
    assert snapshot() == registered


def test_dry_run_refuses_a_bad_chain(chain_file: Path, tmp_path: Path) -> None:
    push_assistant(tmp_path)
    chain_file.with_suffix(".yaml").write_text(CHAT_YAML.replace("kind: chat", "kind: nope"))
    result = cli("chains", "log", chain_file, "--dry-run")
    assert result.exit_code != 0
    assert "nope" in result.stderr
