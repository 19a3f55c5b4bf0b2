"""Settings: defaults from LLMOPS_HOME, profiles of llmops.yaml, LLMOPS_* overrides, errors."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from llmops.config import Settings, get_settings, load_settings, reset_settings
from llmops.errors import ConfigError

PROJECT_YAML = """\
project: test-project
default_profile: dev
profiles:
  dev: {}
  staging:
    home: state/staging
    gateway: {port: 8081}
  prod:
    home: /srv/llmops
    tracking_uri: postgresql://mlflow@db/mlflow
    vector: {mode: server, host: chroma.internal}
    gateway: {host: 0.0.0.0, port: 9090}
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], Path]]:
    """A clean project folder (no LLMOPS_* in the environment); call it with llmops.yaml text."""
    for var in list(os.environ):
        if var.upper().startswith("LLMOPS_"):
            monkeypatch.delenv(var)
    folder = tmp_path / "project"
    folder.mkdir()
    monkeypatch.setenv("LLMOPS_PROJECT_DIR", str(folder))
    reset_settings()

    def write(text: str) -> Path:
        path = folder / "llmops.yaml"
        path.write_text(textwrap.dedent(text))
        reset_settings()
        return path

    yield write
    reset_settings()


def test_defaults_derive_from_home(settings: Settings, home: Path) -> None:
    assert settings.profile == "dev"
    assert settings.home_dir == home
    assert settings.tracking_uri == f"sqlite:///{home / 'mlflow.db'}"
    assert settings.registry_uri == settings.tracking_uri
    assert settings.artifact_root == (home / "artifacts").as_uri()
    assert settings.store_url == f"sqlite:///{home / 'requests.db'}"
    assert settings.vector.path == home / "chroma"
    assert get_settings() is settings  # one object per process


def test_home_defaults_to_dot_llmops_in_the_project(project: Callable[[str], Path]) -> None:
    folder = project("{}").parent
    s = get_settings()
    assert s.project_dir == folder.resolve()
    assert s.home_dir == folder.resolve() / ".llmops"
    assert s.tracking_uri == f"sqlite:///{folder.resolve() / '.llmops' / 'mlflow.db'}"
    assert s.models_dir == folder.resolve() / ".llmops" / "models"


def test_no_config_file_means_defaults(project: Callable[[str], Path]) -> None:
    s = get_settings()
    assert s.profile == "dev"
    assert s.gateway.port == 8080
    assert s.vector.mode == "embedded"


def test_profiles_from_the_file(project: Callable[[str], Path]) -> None:
    folder = project(PROJECT_YAML).parent.resolve()
    dev = load_settings()
    assert (dev.profile, dev.gateway.port, dev.home_dir) == ("dev", 8080, folder / ".llmops")

    staging = load_settings("staging")
    assert staging.home_dir == folder / "state" / "staging"  # relative to the project
    assert staging.tracking_uri == f"sqlite:///{folder / 'state' / 'staging' / 'mlflow.db'}"
    assert staging.gateway.port == 8081

    prod = get_settings("prod")
    assert prod.profile == "prod"
    assert prod.home_dir == Path("/srv/llmops")
    assert prod.tracking_uri == prod.registry_uri == "postgresql://mlflow@db/mlflow"
    assert (prod.vector.mode, prod.vector.host) == ("server", "chroma.internal")
    assert (prod.gateway.host, prod.gateway.port) == ("0.0.0.0", 9090)
    assert prod.gateway.refresh_interval_s == 30.0  # unset keys keep their defaults
    assert get_settings() is prod  # --profile sticks for the process


@pytest.mark.parametrize(
    ("env", "profile", "expected"),
    [
        ({"LLMOPS_GATEWAY__PORT": "9000"}, "prod", {"gateway.port": 9000, "gateway.host": "0.0.0.0"}),
        ({"LLMOPS_GATEWAY__PORT": "9000"}, None, {"gateway.port": 9000}),
        ({"LLMOPS_TRACKING_URI": "sqlite:////x/m.db"}, "prod",
         {"tracking_uri": "sqlite:////x/m.db", "registry_uri": "sqlite:////x/m.db"}),
        ({"LLMOPS_PROFILE": "staging"}, None, {"profile": "staging", "gateway.port": 8081}),
        ({"LLMOPS_PROFILE": "staging"}, "prod", {"profile": "prod"}),  # the argument wins
        ({"LLMOPS_VECTOR__MODE": "server"}, None, {"vector.mode": "server"}),
        ({"LLMOPS_HOME": "elsewhere"}, None, {"home": "PROJECT/elsewhere"}),
    ],
)
def test_environment_overrides_the_profile(
    project: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str], profile: str | None, expected: dict[str, object],
) -> None:
    folder = project(PROJECT_YAML).parent.resolve()
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    s = get_settings(profile)
    for dotted, want in expected.items():
        got: object = s
        for part in dotted.split("."):
            got = getattr(got, part)
        if isinstance(want, str) and want.startswith("PROJECT/"):
            want = folder / want.removeprefix("PROJECT/")
        assert got == want, dotted


def test_keyword_overrides_beat_the_environment(
    project: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    project(PROJECT_YAML)
    monkeypatch.setenv("LLMOPS_BASE_MODEL", "hf:from/env")
    assert load_settings().base_model == "hf:from/env"
    assert load_settings(base_model="/local/model").base_model == "/local/model"


# (llmops.yaml text, profile, environment, substrings the message must hold)
BAD_SETTINGS = [
    pytest.param(
        "profiles:\n  prod:\n    gateway:\n      prot: 1\n", "prod", {},
        ["llmops.yaml", "profiles.prod.gateway.prot", "unknown key", "allowed: host, port"],
        id="unknown-nested-key",
    ),
    pytest.param(
        "profiles:\n  dev:\n    trackng_uri: x\n", None, {},
        ["llmops.yaml", "profiles.dev.trackng_uri", "unknown key", "tracking_uri"],
        id="unknown-key-in-profile",
    ),
    pytest.param(
        "projekt: x\n", None, {},
        ["llmops.yaml", "projekt", "unknown key", "allowed: project, default_profile, profiles"],
        id="unknown-top-level-key",
    ),
    pytest.param(
        "profiles:\n  prod:\n    gateway: {port: eighty}\n", "prod", {},
        ["llmops.yaml", "profiles.prod.gateway.port", "valid integer"],
        id="bad-type",
    ),
    pytest.param(
        "profiles:\n  prod:\n    gateway: {port: 70000}\n", "prod", {},
        ["llmops.yaml", "profiles.prod.gateway.port", "less than or equal to 65535"],
        id="out-of-range",
    ),
    pytest.param(
        "profiles:\n  prod:\n    vector: {mode: cloud}\n", "prod", {},
        ["llmops.yaml", "profiles.prod.vector.mode", "'embedded' or 'server'"],
        id="bad-choice",
    ),
    pytest.param(
        "profiles:\n  qa: {}\n", None, {},
        ["llmops.yaml", "profiles.qa", "'dev', 'staging' or 'prod'"],
        id="unknown-profile-in-file",
    ),
    pytest.param(
        "default_profile: qa\n", None, {},
        ["llmops.yaml", "default_profile", "'dev', 'staging' or 'prod'"],
        id="unknown-default-profile",
    ),
    pytest.param(
        "{}\n", "qa", {},
        ["llmops.yaml", "'qa'", "allowed: dev, staging, prod"],
        id="unknown-profile-argument",
    ),
    pytest.param(
        "{}\n", None, {"LLMOPS_PROFILE": "qa"},
        ["LLMOPS_PROFILE", "'qa'", "allowed: dev, staging, prod"],
        id="unknown-profile-env",
    ),
    pytest.param(
        "profiles:\n  dev:\n    profile: prod\n", None, {},
        ["llmops.yaml", "profiles.dev.profile", "not settable"],
        id="profile-inside-profile",
    ),
    pytest.param(
        "profiles: [dev\n", None, {},
        ["llmops.yaml", "not valid YAML", "line 2"],
        id="malformed-yaml",
    ),
    pytest.param(
        "- dev\n- prod\n", None, {},
        ["llmops.yaml", "mapping"],
        id="not-a-mapping",
    ),
    pytest.param(
        "{}\n", None, {"LLMOPS_GATEWAY__PORT": "many"},
        ["LLMOPS_GATEWAY__PORT", "gateway.port", "valid integer"],
        id="bad-env-value",
    ),
]


@pytest.mark.parametrize(("text", "profile", "env", "needles"), BAD_SETTINGS)
def test_bad_settings_name_the_file_the_key_and_what_is_allowed(
    project: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch,
    text: str, profile: str | None, env: dict[str, str], needles: list[str],
) -> None:
    path = project(text)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError) as info:
        get_settings(profile)
    message = str(info.value)
    assert "\n" not in message
    for needle in needles:
        assert needle.replace("llmops.yaml", str(path)) in message, message


def test_a_bad_profile_does_not_stick(project: Callable[[str], Path]) -> None:
    project(PROJECT_YAML)
    assert get_settings("staging").profile == "staging"
    with pytest.raises(ConfigError):
        get_settings("qa")
    assert get_settings().profile == "staging"  # still the last good one


def test_reference_project_settings_are_valid(home: Path) -> None:
    for profile in ("dev", "staging", "prod"):
        assert load_settings(profile).profile == profile
