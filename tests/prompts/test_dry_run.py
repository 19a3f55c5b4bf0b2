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


def test_promote_and_archive_dry_runs_check_everything_and_change_nothing(
        settings: Settings, prompt_dir: Path) -> None:
    from llmops.registry import get_registry

    prompts.push([prompt_dir / "qa.yaml"])
    prompts.promote("qa", 1, "staging")
    before = snapshot()
    history = get_registry().history("prompt.qa")
    run = cli("prompts", "promote", "qa", "--version", "1", "--to", "production",
              "--expect", "none", "--dry-run")
    assert run.exit_code == 0, run.stderr
    assert run.stdout.strip() == ("dry run: prompt.qa@production: unset -> 1 "
                                  "(would move; nothing changed)")
    conflict = cli("prompts", "promote", "qa", "--version", "1", "--to", "staging",
                   "--expect", "none", "--dry-run")  # staging is 1, not unset
    assert conflict.exit_code != 0 and "prompt.qa@staging is version 1, not unset" in conflict.stderr
    archive = cli("registry", "archive", "prompt.qa", "--version", "1", "--reason", "old",
                  "--dry-run")
    assert archive.exit_code == 0 and "would be archived: old" in archive.stdout
    missing = cli("registry", "archive", "prompt.qa", "--version", "9", "--reason", "x",
                  "--dry-run")
    assert missing.exit_code != 0
    assert snapshot() == before and get_registry().history("prompt.qa") == history
    assert not get_registry().get("prompt.qa", 1).archived
