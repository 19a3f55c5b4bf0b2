"""Aliases on a real MLflow registry: compare-and-set moves, audit, archive, the model lock."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest

from llmops.errors import AliasConflictError, NotFoundError, RegistryError
from llmops.registry import ANY, TAG_ARCHIVED, TAG_ARCHIVED_REASON, Registry
from tests.registry.conftest import NAME, register, state


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
