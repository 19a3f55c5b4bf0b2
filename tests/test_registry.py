"""The registry glue on a real MLflow registry (SQLite in a temporary LLMOPS_HOME)."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from llmops.config import Settings, load_settings
from llmops.errors import AliasConflictError, NotFoundError, RegistryError
from llmops.registry import (
    ANY,
    TAG_ARCHIVED,
    TAG_ARCHIVED_REASON,
    TAG_COMMIT,
    TAG_HASH,
    Ref,
    Registry,
    VersionInfo,
)

REPO = Path(__file__).resolve().parent.parent
NAME = "prompt.t"


def register(reg: Registry, content: str, name: str = NAME) -> tuple[VersionInfo, bool]:
    """Register a one-file model folder whose content hash is `content`."""
    folder = reg.settings.home_dir / "src" / content
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.txt").write_text(content)
    with reg.run("tests", f"register {content}") as run:
        return reg.register(name, folder, content_hash=f"hash-{content}", run=run,
                            tags={"purpose": "test"}, description=f"content {content}")


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
    """Like `three`, built once for the tests that only read it."""
    home = tmp_path_factory.mktemp("shared-home")
    shutil.copy(mlflow_template, home / "mlflow.db")
    reg = Registry(load_settings(project_dir=REPO, home=home, tracking_uri=None,
                                 registry_uri=None, artifact_root=None))
    for content in ("a", "b", "c"):
        register(reg, content)
    reg.move_alias(NAME, "staging", 1, expect=None)
    reg.move_alias(NAME, "production", 2, expect=None)
    return reg


def state(reg: Registry, name: str = NAME) -> tuple[Any, ...]:
    """Everything an alias move could change: versions with aliases and tags, and the audit."""
    return (
        [(v.version, v.aliases, dict(v.tags)) for v in reg.list_versions(name)],
        [r.to_dict() for r in reg.history(name)],
    )


def test_register_is_idempotent_by_content_hash(reg: Registry) -> None:
    first, created = register(reg, "a")
    assert (first.version, created) == (1, True)
    assert first.content_hash == "hash-a"
    again, created = register(reg, "a")
    assert (again.version, created, again.run_id) == (1, False, first.run_id)
    assert [v.version for v in reg.list_versions(NAME)] == [1]
    # the second run logged no model: nothing new was stored
    runs = reg.client.search_runs([reg.experiment_id("tests")])
    assert len(runs) == 2
    logged = {r.info.run_id: [a.path for a in reg.client.list_artifacts(r.info.run_id)] for r in runs}
    assert logged[first.run_id] == ["model"]
    assert [paths for rid, paths in logged.items() if rid != first.run_id] == [[]]
    second, created = register(reg, "b")
    assert (second.version, created) == (2, True)


def test_every_version_carries_the_git_commit(reg: Registry) -> None:
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                          text=True, check=True).stdout.strip()
    info, _ = register(reg, "a")
    assert info.tags[TAG_COMMIT] == head
    assert info.tags["llmops.git_dirty"] in ("true", "false")
    assert info.tags["purpose"] == "test"
    assert info.description == "content a"
    run = reg.client.get_run(info.run_id)
    assert run.data.tags["mlflow.source.git.commit"] == head
    assert run.info.status == "FINISHED"


@pytest.mark.parametrize(
    ("name",), [("t",), ("model.t",), ("prompt.",), ("prompt.a b",), ("prompt.t/1",)]
)
def test_register_refuses_bad_names(reg: Registry, name: str) -> None:
    with pytest.raises(RegistryError, match="bad registered model name"):
        register(reg, "a", name=name)
    assert reg.list_models() == []


@pytest.mark.parametrize(
    ("ref", "kind", "version"),
    [
        ("prompt.t@staging", None, 1),
        ("prompt.t@production", None, 2),
        ("prompt.t/3", None, 3),
        ("prompt.t/1", None, 1),
        ("prompt.t", None, 3),  # the latest
        ("models:/prompt.t@production", None, 2),
        ("  prompt.t/2 ", None, 2),
        ("t@staging", "prompt", 1),
        ("t/3", "prompt", 3),
        ("t", "prompt", 3),
        ("prompt.t", "prompt", 3),
    ],
)
def test_resolve(shared_three: Registry, ref: str, kind: str | None, version: int) -> None:
    info = shared_three.resolve(ref, kind=kind)
    assert (info.name, info.version) == (NAME, version)
    assert info.content_hash == f"hash-{'abc'[version - 1]}"


@pytest.mark.parametrize(
    ("ref", "error", "words"),
    [
        ("prompt.t@canary", NotFoundError, "no alias 'canary' (aliases: production->2, staging->1)"),
        ("prompt.t/9", NotFoundError, "prompt.t has no version 9"),
        ("prompt.nope", NotFoundError, "no registered model named 'prompt.nope'"),
        ("prompt.nope@staging", NotFoundError, "no registered model named 'prompt.nope'"),
        ("prompt.nope/1", NotFoundError, "no registered model named 'prompt.nope'"),
        ("", RegistryError, "bad model reference"),
        ("prompt.t@", RegistryError, "bad model reference"),
        ("prompt.t@1x", RegistryError, "bad model reference"),
        ("prompt.t/x", RegistryError, "bad model reference"),
        ("prompt.t/1/2", RegistryError, "bad model reference"),
        ("prompt.t@a@b", RegistryError, "bad model reference"),
        ("prompt t", RegistryError, "bad model reference"),
    ],
)
def test_resolve_errors(
    shared_three: Registry, ref: str, error: type[Exception], words: str
) -> None:
    with pytest.raises(error) as info:
        shared_three.resolve(ref)
    assert words in str(info.value)


def test_unknown_alias_with_no_aliases_says_none(reg: Registry) -> None:
    register(reg, "a")
    with pytest.raises(NotFoundError, match=r"no alias 'staging' \(aliases: none\)"):
        reg.resolve("prompt.t@staging")


def test_ref_round_trip() -> None:
    for text in ("prompt.qa", "prompt.qa@staging", "prompt.qa/3"):
        assert str(Ref.parse(text)) == text
    assert Ref.parse("qa/3", kind="prompt") == Ref("prompt.qa", None, 3)


def test_list_versions_shows_aliases_and_tags(three: Registry) -> None:
    versions = three.list_versions(NAME)
    assert [(v.version, v.aliases) for v in versions] == [
        (1, ("staging",)), (2, ("production",)), (3, ())
    ]
    three.move_alias(NAME, "staging", 2, expect=1)
    versions = three.list_versions(NAME)
    assert [v.aliases for v in versions] == [(), ("production", "staging"), ()]
    d = versions[1].to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["aliases"] == ["production", "staging"]
    assert d["tags"][TAG_HASH] == "hash-b"
    assert three.list_models("prompt.") == [NAME]
    assert three.list_models("chain.") == []


# -- aliases: compare-and-set ---------------------------------------------------------


def test_alias_compare_and_set(reg: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMOPS_ACTOR", "alice@ci")
    register(reg, "a")
    register(reg, "b")
    first = reg.move_alias(NAME, "production", 1, expect=None, reason="first release")
    assert (first.from_version, first.to_version) == (None, 1)
    second = reg.move_alias(NAME, "production", 2, expect=1, reason="better")
    assert (second.from_version, second.to_version) == (1, 2)
    third = reg.move_alias(NAME, "production", 1, reason="roll back")  # expect=ANY
    assert (third.from_version, third.to_version) == (2, 1)
    assert reg.resolve("prompt.t@production").version == 1

    history = reg.history(NAME)
    assert [r.to_dict() | {"at": None} for r in history] == [
        {"seq": 1, "action": "move", "alias": "production", "from": None, "to": 1,
         "actor": "alice@ci", "at": None, "reason": "first release"},
        {"seq": 2, "action": "move", "alias": "production", "from": 1, "to": 2,
         "actor": "alice@ci", "at": None, "reason": "better"},
        {"seq": 3, "action": "move", "alias": "production", "from": 2, "to": 1,
         "actor": "alice@ci", "at": None, "reason": "roll back"},
    ]
    now = datetime.now(timezone.utc)
    for r in history:
        assert now - timedelta(minutes=5) < datetime.fromisoformat(r.at) <= now + timedelta(seconds=1)


def test_who_defaults_to_user_at_host_and_can_be_given(
    reg: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LLMOPS_ACTOR", raising=False)
    register(reg, "a")
    assert "@" in reg.move_alias(NAME, "staging", 1, expect=None).actor
    assert reg.move_alias(NAME, "staging", 1, who="gate:ci").actor == "gate:ci"
    assert [r.actor for r in reg.history(NAME)][1] == "gate:ci"


@pytest.mark.parametrize(
    ("alias", "version", "expect", "words"),
    [
        ("production", 3, 1, "prompt.t@production is version 2, not version 1 as expected"),
        ("production", 3, None, "prompt.t@production is version 2, not unset as expected"),
        ("staging", 3, 3, "prompt.t@staging is version 1, not version 3 as expected"),
        ("canary", 3, 2, "prompt.t@canary is unset, not version 2 as expected"),
    ],
)
def test_alias_mismatch_changes_nothing(
    three: Registry, alias: str, version: int, expect: int | None, words: str
) -> None:
    before = state(three)
    with pytest.raises(AliasConflictError) as info:
        three.move_alias(NAME, alias, version, expect=expect, reason="should not happen")
    assert words in str(info.value)
    assert "nothing changed" in str(info.value)
    assert state(three) == before


@pytest.mark.parametrize(
    ("alias", "version", "error", "words"),
    [
        ("staging", 9, NotFoundError, "prompt.t has no version 9"),
        ("latest", 1, RegistryError, "bad alias 'latest'"),
        ("1st", 1, RegistryError, "bad alias '1st'"),
        ("a b", 1, RegistryError, "bad alias 'a b'"),
    ],
)
def test_alias_move_refusals_change_nothing(
    three: Registry, alias: str, version: int, error: type[Exception], words: str
) -> None:
    before = state(three)
    with pytest.raises(error, match=words):
        three.move_alias(NAME, alias, version, expect=ANY)
    assert state(three) == before


def test_move_alias_on_a_missing_model(reg: Registry) -> None:
    with pytest.raises(NotFoundError, match=r"no registered model named 'prompt\.nope'"):
        reg.move_alias("prompt.nope", "staging", 1, expect=None)


def test_delete_alias_is_compare_and_set(three: Registry) -> None:
    before = state(three)
    with pytest.raises(AliasConflictError):
        three.delete_alias(NAME, "staging", expect=2)
    with pytest.raises(NotFoundError, match="no alias 'canary'"):
        three.delete_alias(NAME, "canary")
    assert state(three) == before
    record = three.delete_alias(NAME, "staging", expect=1, reason="retire")
    assert (record.action, record.from_version, record.to_version) == ("delete", 1, None)
    assert three.list_versions(NAME)[0].aliases == ()
    assert three.history(NAME)[-1] == record


def test_archive(three: Registry) -> None:
    record = three.archive(NAME, 3, "failed the gate: faithfulness 0.41 < 0.7")
    assert (record.action, record.alias, record.to_version) == ("archive", None, 3)
    info = three.get(NAME, 3)
    assert info.archived
    assert info.tags[TAG_ARCHIVED] == "true"
    assert info.tags[TAG_ARCHIVED_REASON] == "failed the gate: faithfulness 0.41 < 0.7"
    assert three.history(NAME)[-1] == record

    before = state(three)
    with pytest.raises(RegistryError, match=r"prompt.t/3 is archived \(failed the gate"):
        three.move_alias(NAME, "production", 3, expect=2)
    assert state(three) == before
    assert three.resolve("prompt.t/3").version == 3  # still readable
    with pytest.raises(NotFoundError):
        three.archive(NAME, 9, "no such version")


def test_download_is_cached(three: Registry) -> None:
    folder = three.download(NAME, 2)
    assert (folder / "model.txt").read_text() == "b"
    assert folder.is_relative_to(three.settings.home_dir)
    assert three.download(NAME, 2) == folder


@pytest.mark.parametrize("shared", [True, False], ids=["one-registry", "a-registry-each"])
def test_eight_threads_register_at_once(settings: Settings, shared: bool) -> None:
    """8 writers of one model at once: versions 1..8, one per content, no error."""
    threads_n = 8
    one = Registry(settings)
    one.experiment_id("tests")  # not part of the race: experiment creation
    barrier = threading.Barrier(threads_n)
    results: list[tuple[VersionInfo, bool] | None] = [None] * threads_n
    errors: list[BaseException] = []

    def work(i: int) -> None:
        reg = one if shared else Registry(settings)
        try:
            barrier.wait(timeout=30)
            results[i] = register(reg, f"content-{i}")
        except BaseException as exc:  # collected and asserted on below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    assert all(r is not None and r[1] for r in results)
    assert sorted(r[0].version for r in results if r) == list(range(1, threads_n + 1))
    versions = one.list_versions(NAME)
    assert [v.version for v in versions] == list(range(1, threads_n + 1))
    assert sorted(v.content_hash or "" for v in versions) == sorted(
        f"hash-content-{i}" for i in range(threads_n)
    )


def test_concurrent_compare_and_set_has_one_winner(three: Registry) -> None:
    """8 threads move production from 2 to their own version at once: one wins, 7 conflict."""
    for content in "defgh":
        register(three, content)  # versions 4..8
    targets = [1, 3, 4, 5, 6, 7, 8, 3]
    barrier = threading.Barrier(len(targets))
    outcomes: list[str] = []

    def work(version: int) -> None:
        barrier.wait(timeout=30)
        try:
            three.move_alias(NAME, "production", version, expect=2, reason=f"to {version}")
            outcomes.append(f"won {version}")
        except AliasConflictError:
            outcomes.append("conflict")

    threads = [threading.Thread(target=work, args=(v,)) for v in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    winners = [o for o in outcomes if o.startswith("won")]
    assert len(outcomes) == len(targets)
    assert len(winners) == 1
    won = int(winners[0].split()[1])
    assert three.resolve("prompt.t@production").version == won
    moves = [r for r in three.history(NAME) if r.alias == "production"]
    assert [(r.from_version, r.to_version) for r in moves] == [(None, 2), (2, won)]


def test_lock_is_reentrant(three: Registry) -> None:
    """A caller holding the model's lock (a gate: check, then promote) can still move aliases."""
    done = threading.Event()

    def work() -> None:
        with three.lock(NAME), three.lock(NAME):
            three.move_alias(NAME, "staging", 3, expect=1)
        done.set()

    t = threading.Thread(target=work, daemon=True)
    t.start()
    assert done.wait(timeout=20), "nested lock deadlocked"
    assert three.resolve("prompt.t@staging").version == 3
