"""Helpers of the CLI tests: run `llmops ...` in-process, snapshot the registry, seed prompts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from llmops import prompts
from llmops.cli import app
from llmops.registry import get_registry


class Result:
    """What one CLI call printed, and its exit code."""

    def __init__(self, exit_code: int, stdout: str, stderr: str) -> None:
        self.exit_code, self.stdout, self.stderr = exit_code, stdout, stderr

    def json(self) -> Any:
        return json.loads(self.stdout)


def cli(*args: str | Path) -> Result:
    """`llmops ARGS` through the root app; a crash (not a translated error) is raised."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception  # a crash, not a translated error
    return Result(result.exit_code, result.stdout, result.stderr)


def snapshot() -> dict[str, Any]:
    """Versions, aliases, tags and audit of every registered model, and the number of runs."""
    reg = get_registry()
    exps = [e.experiment_id for e in reg.client.search_experiments()]
    return {
        "models": {
            name: ([v.to_dict() for v in reg.list_versions(name)],
                   [r.to_dict() for r in reg.history(name)])
            for name in reg.list_models()
        },
        "runs": len(reg.client.search_runs(exps)) if exps else 0,
    }


def seed_prompts(prompt_dir: Path) -> Path:
    """qa versions 1 and 2 (production -> 1, staging -> 2), summarize version 1."""
    prompts.push([prompt_dir])
    qa = prompt_dir / "qa.yaml"
    qa.write_text(qa.read_text().replace("max_tokens: 200", "max_tokens: 100"))
    prompts.push([qa])
    prompts.promote("qa", 1, "production", expect=None, reason="launch")
    prompts.promote("qa", 2, "staging", expect=None)
    return prompt_dir


def assert_one_line_error(args: list[str], code: int, words: str) -> None:
    """The command fails with `code` and one `error: ...` line holding `words`; nothing changes."""
    before = snapshot()
    result = cli(*args)
    assert result.exit_code == code
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert words in lines[0], lines[0]
    assert snapshot() == before
    assert cli("prompts", "list").exit_code == 0  # and the next command works normally
