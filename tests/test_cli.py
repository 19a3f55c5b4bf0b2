"""The root `llmops` app: every area mounted, errors translated once into one line and an exit code."""

from __future__ import annotations

import pytest

from llmops.config import Settings, reset_settings
from tests.cli_helpers import assert_one_line_error, cli

AREAS = ["registry", "trace", "prompts", "chains", "index", "serve", "keys", "feedback", "eval",
         "gate", "ab", "demo"]


def test_every_area_is_mounted() -> None:
    result = cli("--help")
    assert result.exit_code == 0
    for area in AREAS:
        assert f" {area} " in result.stdout, area


def test_unknown_profile_is_one_line(settings: Settings) -> None:
    assert_one_line_error(["--profile", "qa", "prompts", "list"], 2,
                          "profile 'qa' is unknown; allowed: dev, staging, prod")


def test_config_error_is_one_line(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMOPS_GATEWAY__PORT", "many")
    reset_settings()
    result = cli("prompts", "list")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "error: settings (profile dev): LLMOPS_GATEWAY__PORT -> gateway.port: "
        "Input should be a valid integer, unable to parse string as an integer"
    ]
