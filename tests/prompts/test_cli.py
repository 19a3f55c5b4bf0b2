"""`llmops prompts ...` through typer's CliRunner on a real registry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from llmops.config import Settings
from llmops.errors import SpecError
from llmops.registry import ANY, get_registry, parse_expect
from tests.cli_helpers import assert_one_line_error, cli
from tests.conftest import REPO


def test_push_list_show(settings: Settings, prompt_dir: Path) -> None:
    first = cli("prompts", "push", prompt_dir)
    assert first.exit_code == 0, first.stderr
    assert first.stdout.splitlines() == [
        "prompt.qa: registered version 1", "prompt.summarize: registered version 1"
    ]
    assert first.stderr == ""  # no warnings or progress bars
    again = cli("prompts", "push", prompt_dir, "--json")
    assert again.exit_code == 0
    assert [(r["name"], r["version"], r["created"]) for r in again.json()] == [
        ("prompt.qa", 1, False), ("prompt.summarize", 1, False)
    ]

    listed = cli("prompts", "list")
    assert listed.exit_code == 0
    assert listed.stdout.splitlines() == ["prompt.qa  latest 1  -", "prompt.summarize  latest 1  -"]
    rows = cli("prompts", "list", "--json").json()
    assert [(r["name"], r["latest"], r["aliases"]) for r in rows] == [
        ("prompt.qa", 1, {}), ("prompt.summarize", 1, {})
    ]

    shown = cli("prompts", "show", "qa")
    assert shown.exit_code == 0
    assert shown.stdout.startswith("prompt.qa/1  aliases: -\n")
    assert "[user]\nDocumentation passages:\n{{context}}" in shown.stdout
    assert "variables: context (untrusted), question (untrusted)" in shown.stdout
    data = cli("prompts", "show", "summarize/1", "--json").json()
    assert (data["ref"], data["version"], data["name"]) == ("prompt.summarize/1", 1, "summarize")
    assert data["variables"]["sentences"]["required"] is False


def test_push_defaults_to_the_project_prompts(settings: Settings) -> None:
    result = cli("prompts", "push")
    assert result.exit_code == 0
    assert "prompt.qa: registered version 1" in result.stdout


def test_list_when_empty(settings: Settings) -> None:
    assert cli("prompts", "list").stdout == "no prompts registered; run: llmops prompts push\n"
    assert cli("prompts", "list", "--json").json() == []


def test_show_a_local_file(settings: Settings) -> None:
    result = cli("prompts", "show", REPO / "prompts" / "summarize.yaml", "--json")
    assert result.exit_code == 0
    assert result.json()["version"] is None
    assert get_registry().list_models() == []


def test_diff(seeded: Path) -> None:
    result = cli("prompts", "diff", "qa@production", "qa@staging")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[:2] == ["--- prompt.qa/1", "+++ prompt.qa/2"]
    assert "-  max_tokens: 200" in lines
    assert "+  max_tokens: 100" in lines
    same = cli("prompts", "diff", "qa/1", "qa@production")
    assert same.stdout == "qa/1 and qa@production are identical\n"


def test_promote(seeded: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMOPS_ACTOR", "bob@ci")
    result = cli("prompts", "promote", "qa", "--version", "2", "--to", "production",
                 "--expect", "1", "--reason", "better answers")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "prompt.qa@production: 1 -> 2\n"
    unset = cli("prompts", "promote", "summarize", "-v", "1", "--to", "staging", "--expect", "none")
    assert unset.stdout == "prompt.summarize@staging: unset -> 1\n"
    rows = {r["name"]: r for r in cli("prompts", "list", "--json").json()}
    assert rows["prompt.qa"]["aliases"] == {"production": 2, "staging": 2}


def _bad_yaml(folder: Path) -> list[str]:
    (folder / "broken.yaml").write_text("name: broken\nmessages: [\n")
    return ["prompts", "push", str(folder)]


# (argv, or a function of the prompt folder that returns it; exit code; words of the error)
FAILURES = [
    pytest.param(_bad_yaml, 2, "broken.yaml: not valid YAML", id="malformed-yaml"),
    pytest.param(["prompts", "show", "qa@canary"], 1,
                 "prompt.qa has no alias 'canary' (aliases: production->1, staging->2)",
                 id="unknown-alias-show"),
    pytest.param(["prompts", "diff", "qa/1", "qa@canary"], 1, "no alias 'canary'",
                 id="unknown-alias-diff"),
    pytest.param(["prompts", "promote", "qa", "-v", "2", "--to", "canary"], 2,
                 "--to must be one of staging, production, not 'canary'",
                 id="unknown-alias-promote"),
    pytest.param(["prompts", "promote", "qa", "-v", "2", "--to", "production", "--expect", "2"],
                 1, "prompt.qa@production is version 1, not version 2 as expected; nothing changed",
                 id="wrong-expect"),
    pytest.param(["prompts", "promote", "qa", "-v", "2", "--to", "production", "--expect", "none"],
                 1, "prompt.qa@production is version 1, not unset as expected", id="expect-none"),
    pytest.param(["prompts", "promote", "qa", "-v", "2", "--to", "production", "--expect", "x"],
                 2, "--expect must be a version number or 'none'", id="bad-expect"),
    pytest.param(["prompts", "promote", "qa", "-v", "7", "--to", "staging"], 1,
                 "prompt.qa has no version 7", id="unknown-version"),
    pytest.param(["prompts", "show", "nope"], 1, "no registered model named 'prompt.nope'",
                 id="unknown-prompt"),
    pytest.param(["prompts", "show", "qa@"], 1, "bad model reference 'qa@'", id="bad-ref"),
]


@pytest.mark.parametrize(("argv", "code", "words"), FAILURES)
def test_errors_are_one_line_and_change_nothing(
    seeded: Path, argv: Any, code: int, words: str
) -> None:
    assert_one_line_error(argv(seeded) if callable(argv) else argv, code, words)


@pytest.mark.parametrize(
    ("text", "expected"),
    [(None, ANY), ("none", None), ("None", None), ("3", 3), (" 12 ", 12), ("0", 0),
     ("x", SpecError), ("-1", SpecError), ("1.5", SpecError), ("\u00b2", SpecError), ("", SpecError)],
)
def test_parse_expect(text: str | None, expected: Any) -> None:
    if expected is SpecError:
        with pytest.raises(SpecError, match="--expect must be a version number or 'none'"):
            parse_expect(text)
    elif expected is ANY or expected is None:
        assert parse_expect(text) is expected
    else:
        assert parse_expect(text) == expected
