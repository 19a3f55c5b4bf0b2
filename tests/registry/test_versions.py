"""Registered versions on a real MLflow registry: register, resolve, list, download."""

from __future__ import annotations

import json
import subprocess
import threading

import pytest

from llmops.config import Settings
from llmops.errors import NotFoundError, RegistryError
from llmops.registry import TAG_COMMIT, TAG_HASH, Ref, Registry, VersionInfo
from tests.conftest import REPO
from tests.registry.conftest import NAME, register


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
