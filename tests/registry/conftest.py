"""Fixtures of the registry tests: a registry with one small model, `prompt.t`, and helpers."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from llmops.config import Settings, load_settings
from llmops.registry import Registry, VersionInfo
from tests.cli_helpers import seed_prompts
from tests.conftest import REPO

NAME = "prompt.t"


def register(reg: Registry, content: str, name: str = NAME) -> tuple[VersionInfo, bool]:
    """Register a one-file model folder whose content hash is `content`."""
    folder = reg.settings.home_dir / "src" / content
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.txt").write_text(content)
    with reg.run("tests", f"register {content}") as run:
        return reg.register(name, folder, content_hash=f"hash-{content}", run=run,
                            tags={"purpose": "test"}, description=f"content {content}")


def state(reg: Registry, name: str = NAME) -> tuple[Any, ...]:
    """Everything an alias move could change: versions with aliases and tags, and the audit."""
    return (
        [(v.version, v.aliases, dict(v.tags)) for v in reg.list_versions(name)],
        [r.to_dict() for r in reg.history(name)],
    )


@pytest.fixture
def reg(settings: Settings) -> Registry:
    return Registry(settings)


@pytest.fixture
def three(reg: Registry) -> Registry:
    """prompt.t with versions 1, 2, 3; staging -> 1, production -> 2."""
    for content in ("a", "b", "c"):
        register(reg, content)
    reg.move_alias(NAME, "staging", 1, expect=None)
    reg.move_alias(NAME, "production", 2, expect=None)
    return reg


@pytest.fixture(scope="module")
def shared_three(tmp_path_factory: pytest.TempPathFactory, mlflow_template: Path) -> Registry:
    """Like `three`, built once per module for the tests that only read it."""
    home = tmp_path_factory.mktemp("shared-home")
    shutil.copy(mlflow_template, home / "mlflow.db")
    reg = Registry(load_settings(project_dir=REPO, home=home, tracking_uri=None,
                                 registry_uri=None, artifact_root=None))
    for content in ("a", "b", "c"):
        register(reg, content)
    reg.move_alias(NAME, "staging", 1, expect=None)
    reg.move_alias(NAME, "production", 2, expect=None)
    return reg


@pytest.fixture
def seeded(settings: Settings, prompt_dir: Path) -> Path:
    """The reference prompts pushed: qa 1 (production) and 2 (staging), summarize 1."""
    return seed_prompts(prompt_dir)
