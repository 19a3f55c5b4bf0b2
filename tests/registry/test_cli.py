"""`llmops registry history|versions|archive` through typer's CliRunner on a real registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmops import prompts
from tests.cli_helpers import assert_one_line_error, cli, snapshot


def test_history_and_versions(seeded: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMOPS_ACTOR", "bob@ci")
    prompts.promote("qa", 2, "production", expect=1, reason="better answers")
    prompts.promote("summarize", 1, "staging", expect=None)

    history = cli("registry", "history", "prompt.qa")
    assert history.exit_code == 0
    lines = history.stdout.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("#1 ") and lines[0].endswith("move production: unset -> 1  (launch)")
    assert " bob@ci move production: 1 -> 2  (better answers)" in lines[2]
    records = cli("registry", "history", "prompt.qa", "--json").json()
    assert [(r["alias"], r["from"], r["to"]) for r in records] == [
        ("production", None, 1), ("staging", None, 2), ("production", 1, 2)
    ]
    assert records[2]["actor"] == "bob@ci"
    assert records[2]["reason"] == "better answers"
    assert all(r["at"] for r in records)

    versions = cli("registry", "versions", "prompt.qa", "--json").json()
    assert [(v["version"], v["aliases"]) for v in versions] == [
        (1, []), (2, ["production", "staging"])
    ]
    assert cli("registry", "history", "prompt.summarize").stdout.endswith(
        "move staging: unset -> 1\n")


def test_archive_then_promote_is_refused(seeded: Path) -> None:
    result = cli("registry", "archive", "prompt.qa", "-v", "1", "--reason", "leaks")
    assert (result.exit_code, result.stdout) == (0, "prompt.qa/1 archived: leaks\n")
    assert "archived version 1  (leaks)" in cli("registry", "history", "prompt.qa").stdout
    assert "[archived]" in cli("registry", "versions", "prompt.qa").stdout
    before = snapshot()
    refused = cli("prompts", "promote", "qa", "-v", "1", "--to", "staging")
    assert refused.exit_code != 0
    assert refused.stderr.startswith("error: prompt.qa/1 is archived (leaks)")
    assert snapshot() == before


@pytest.mark.parametrize(
    ("argv", "code", "words"),
    [
        pytest.param(["registry", "history", "prompt.nope"], 1, "no registered model named",
                     id="history-unknown"),
        pytest.param(["registry", "versions", "prompt.nope"], 1, "no registered model named",
                     id="versions-unknown"),
        pytest.param(["registry", "archive", "prompt.qa", "-v", "9", "--reason", "x"], 1,
                     "prompt.qa has no version 9", id="archive-unknown-version"),
    ],
)
def test_errors_are_one_line_and_change_nothing(
    seeded: Path, argv: list[str], code: int, words: str
) -> None:
    assert_one_line_error(argv, code, words)
