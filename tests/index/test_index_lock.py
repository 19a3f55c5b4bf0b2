"""One refresh at a time; a lock left by a killed process does not block."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
from index_helpers import Project

from llmops.config import get_settings
from llmops.index import IndexLockedError, refresh, status
from llmops.index.lock import refresh_lock

COLLECTION = "test-docs"

HOLD = """
import sys, time
from pathlib import Path
from llmops.index.lock import refresh_lock
with refresh_lock(Path(sys.argv[1]), sys.argv[2]):
    print("held", flush=True)
    time.sleep(600)
"""


def test_second_refresh_is_refused_at_once(project: Project) -> None:
    home = get_settings().home_dir
    with refresh_lock(home, COLLECTION):
        started = time.monotonic()
        with pytest.raises(IndexLockedError, match=r"already running \(pid \d+ on .* since "):
            refresh(progress=False)
        assert time.monotonic() - started < 2


@pytest.mark.slow
def test_lock_of_a_killed_process_does_not_block(project: Project) -> None:
    home = get_settings().home_dir
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(home), COLLECTION], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(IndexLockedError, match=f"pid {holder.pid}"):
            refresh(progress=False)
        assert status().refresh_running
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (home / "locks" / f"index-{COLLECTION}.lock").exists()  # left behind, yet free
    assert not status().refresh_running
    assert refresh(progress=False).version == 1
