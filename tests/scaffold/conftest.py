"""Fixtures of the scaffold tests: a project made by `llmops init` in a temporary folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cli_helpers import Result, cli


@pytest.fixture
def init(tmp_path: Path) -> Callable[..., tuple[Path, Result]]:
    """`init(*options, folder="proj")`: run `llmops init` there; (folder, result)."""

    def run(*options: str, folder: str = "proj") -> tuple[Path, Result]:
        target = tmp_path / folder
        return target, cli("init", target, *options)

    return run
