"""Locks that hold across hosts (`llmops.locks`): PostgreSQL advisory locks exclude other
processes and die with their holder; two promoters that share only an MLflow server on
PostgreSQL (each its own LLMOPS_HOME, so no file lock between them) race for one alias:
exactly one wins, the other fails cleanly, the audit shows one move."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from llmops.config import Settings
from llmops.errors import AliasConflictError
from llmops.locks import LockTimeout, advisory_lock, lock_key
from tests.conftest import PG_URL, pg_available

pytestmark = pytest.mark.postgres

HOLD = """
import sys, time
from llmops.locks import advisory_lock
with advisory_lock(sys.argv[1], sys.argv[2]):
    print("held", flush=True)
    time.sleep(600)
"""


@pytest.fixture
def pg() -> str:
    if not pg_available():
        pytest.skip("no PostgreSQL at 127.0.0.1:5432")
    return PG_URL


def test_keys_are_stable_signed_64_bit_and_distinct() -> None:
    keys = {lock_key(f"registry:chain.{i}") for i in range(1000)}
    assert len(keys) == 1000 and all(-2**63 <= k < 2**63 for k in keys)
    assert lock_key("index:python-docs") == lock_key("index:python-docs")


def test_an_advisory_lock_excludes_other_processes_and_dies_with_its_holder(pg: str) -> None:
    name = f"test:{uuid.uuid4().hex}"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, pg, name], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with (pytest.raises(LockTimeout, match=r"is held by database process \d+"),
              advisory_lock(pg, name, timeout=0)):
            pass
        started = time.monotonic()
        with (pytest.raises(LockTimeout, match=r"waited 0\.3 s"),
              advisory_lock(pg, name, timeout=0.3)):
            pass
        assert time.monotonic() - started >= 0.3
        os.kill(holder.pid, signal.SIGKILL)  # no unlock: the server frees it
        holder.wait(10)
        with (advisory_lock(pg, name, timeout=10),  # and now this process holds it
              pytest.raises(LockTimeout), advisory_lock(pg, name, timeout=0)):
            pass
    finally:
        holder.kill()
        holder.wait(10)


def test_the_lock_database_is_chosen_from_the_settings(tmp_path: Path) -> None:
    home = tmp_path / "h"
    assert Settings(home=home).lock_database_url is None  # SQLite everywhere: file locks
    pg = "postgresql+psycopg://postgres@db:5432/mlflow"
    assert Settings(home=home, tracking_uri=pg).lock_database_url == pg
    assert Settings(home=home, tracking_uri="http://mlflow:5000",
                    store_url="postgresql://postgres@db/log").lock_database_url == \
        "postgresql://postgres@db/log"
    assert Settings(home=home, lock_url="postgresql://x@y/z",
                    tracking_uri=pg).lock_database_url == "postgresql://x@y/z"


PROMOTER = """
import sys, time
from llmops.errors import AliasConflictError
from llmops.registry import get_registry
start, version = float(sys.argv[1]), int(sys.argv[2])
reg = get_registry()
reg.get("chain.race", version)  # connected and warm before the start
while time.time() < start:
    time.sleep(0.0005)
try:
    reg.move_alias("chain.race", "production", version, expect=1, reason="race")
    print("WON")
except AliasConflictError as exc:
    print(f"LOST {exc}")
"""


@pytest.mark.slow
def test_two_promoters_sharing_only_the_mlflow_server_have_one_winner(
        mlflow_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from llmops.config import reset_settings
    from llmops.registry import get_registry

    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMOPS_")}
    env.update(LLMOPS_TRACKING_URI=mlflow_server, LLMOPS_LOCK_URL=PG_URL,
               MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false")
    for k, v in {**env, "LLMOPS_HOME": str(tmp_path / "setup")}.items():
        if k.startswith("LLMOPS_"):
            monkeypatch.setenv(k, v)
    reset_settings()
    reg = get_registry()
    reg.client.create_registered_model("chain.race")
    run = reg.client.create_run(reg.experiment_id("race"))
    for _ in range(3):
        reg.client.create_model_version("chain.race", source=f"runs:/{run.info.run_id}/model",
                                        run_id=run.info.run_id)
    try:
        for round_ in range(3):
            reg.move_alias("chain.race", "production", 1, reason="reset")
            start = time.time() + 8  # both processes started and warm by then
            promoters = [subprocess.Popen(
                [sys.executable, "-c", PROMOTER, str(start), str(v)], text=True,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env={**env, "LLMOPS_HOME": str(tmp_path / f"host-{v}"),
                     "LLMOPS_ACTOR": f"promoter-{v}"}) for v in (2, 3)]
            outs = [p.communicate(timeout=120) for p in promoters]
            assert all(p.returncode == 0 for p in promoters), outs
            lines = [out.strip() for out, _ in outs]
            won = [v for v, line in zip((2, 3), lines, strict=True) if line == "WON"]
            assert len(won) == 1, (round_, lines)
            loser = next(line for line in lines if line != "WON")
            assert loser.startswith("LOST chain.race@production is version "
                                    f"{won[0]}, not version 1 as expected; nothing changed")
            assert reg.resolve("chain.race@production").version == won[0]
            races = [r for r in reg.history("chain.race") if r.reason == "race"]
            assert len(races) == round_ + 1  # one move per round, never two
            assert (races[-1].from_version, races[-1].to_version, races[-1].actor) == (
                1, won[0], f"promoter-{won[0]}")
        seqs = [r.seq for r in reg.history("chain.race")]
        assert seqs == sorted(set(seqs))  # every audit number once
        with pytest.raises(AliasConflictError):
            reg.move_alias("chain.race", "production", 1, expect=None)
    finally:
        reset_settings()
