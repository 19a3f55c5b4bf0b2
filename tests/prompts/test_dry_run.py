"""`llmops prompts push --dry-run`: says what a push would register and changes nothing."""

from __future__ import annotations

from pathlib import Path

import llmops.prompts as prompts
from llmops.config import Settings
from tests.cli_helpers import cli, snapshot


def test_dry_run_reports_new_and_unchanged_prompts(settings: Settings, prompt_dir: Path) -> None:
    before = snapshot()
    first = cli("prompts", "push", prompt_dir, "--dry-run")
    assert first.exit_code == 0, first.stderr
    lines = first.stdout.splitlines()
    assert lines[0].startswith("prompt.qa: would register version 1 (new content ")
    assert lines[1].startswith("prompt.summarize: would register version 1 (new content ")
    assert lines[-1] == "dry run: nothing registered"
    assert snapshot() == before

    prompts.push([prompt_dir])
    qa = prompt_dir / "qa.yaml"
    qa.write_text(qa.read_text().replace("max_tokens: 200", "max_tokens: 100"))
    registered = snapshot()
    rows = cli("prompts", "push", prompt_dir, "--dry-run", "--json").json()
    assert [(r["name"], r["version"], r["created"], r["dry_run"]) for r in rows] == [
        ("prompt.qa", 2, True, True), ("prompt.summarize", 1, False, True)]
    unchanged = cli("prompts", "push", prompt_dir / "summarize.yaml", "--dry-run")
    assert unchanged.stdout.startswith("prompt.summarize: unchanged, version 1 (content ")
    assert snapshot() == registered

    # the hash it reports is the one a real push registers
    (pushed,) = prompts.push([qa])
    assert (pushed.version, pushed.content_hash) == (2, rows[0]["content_hash"])


def test_dry_run_validates_like_a_push(settings: Settings, prompt_dir: Path) -> None:
    (prompt_dir / "bad.yaml").write_text("name: bad\nmessages: []\n")
    result = cli("prompts", "push", prompt_dir, "--dry-run")
    assert result.exit_code == 2
    assert "bad.yaml" in result.stderr
