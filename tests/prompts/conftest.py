"""Fixtures of the prompts tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmops.config import Settings
from tests.cli_helpers import seed_prompts


@pytest.fixture
def seeded(settings: Settings, prompt_dir: Path) -> Path:
    """qa versions 1 and 2 (production -> 1, staging -> 2), summarize version 1."""
    return seed_prompts(prompt_dir)
