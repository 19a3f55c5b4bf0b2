"""One refresh at a time per index: a non-blocking OS file lock.

The lock is `flock` on `HOME/locks/index-<collection>.lock` (through filelock):
the kernel releases it when its holder exits, however it exits, so a refresh
killed with SIGKILL leaves a lock file that no longer locks anything and the
next refresh takes it at once. A second refresh while one runs is refused at
once with who holds it (pid, host, start time, from the `.owner` file beside).

With a Chroma server (`vector.mode: server`) and a PostgreSQL database in the settings
(`Settings.lock_database_url`), the lock is an advisory lock in that database instead,
which holds across hosts and is released when its holder's connection ends.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from llmops.errors import IndexLockedError


def lock_path(home: Path, collection: str) -> Path:
    return home / "locks" / f"index-{collection}.lock"


@contextmanager
def refresh_lock(home: Path, collection: str, *, database_url: str | None = None
                 ) -> Iterator[None]:
    """Hold the refresh lock of `collection`, or raise IndexLockedError at once.

    `database_url` (a PostgreSQL database: the index is on a Chroma server that several
    hosts share): an advisory lock there (`llmops.locks`) instead of the file lock."""
    if database_url is not None:
        from llmops.locks import LockTimeout, advisory_lock

        held = ExitStack()
        try:
            held.enter_context(advisory_lock(database_url, f"index:{collection}", timeout=0))
        except LockTimeout as exc:
            raise IndexLockedError(f"a refresh of index {collection!r} is already running "
                                   f"({exc}); wait for it to finish") from None
        with held:
            yield
        return
    path = lock_path(home, collection)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path), timeout=0, thread_local=False)
    try:
        lock.acquire()
    except Timeout:
        holder = describe_owner(home, collection)
        raise IndexLockedError(
            f"a refresh of index {collection!r} is already running ({holder}); wait for it to finish"
        ) from None
    try:
        owner = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        _owner_path(path).write_text(json.dumps(owner))
        yield
    finally:
        _owner_path(path).unlink(missing_ok=True)
        lock.release()


def read_owner(home: Path, collection: str) -> dict[str, Any] | None:
    """The holder's pid, host and start time (left behind by a killed holder)."""
    try:
        data = json.loads(_owner_path(lock_path(home, collection)).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def owner_alive(owner: dict[str, Any] | None) -> bool:
    """Whether a recorded holder still runs (same host only; other hosts count as alive)."""
    if not owner:
        return False
    if owner.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(owner.get("pid", -1)), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError):
        return True
    return True


def describe_owner(home: Path, collection: str) -> str:
    owner = read_owner(home, collection)
    if not owner:
        return "holder unknown"
    return f"pid {owner.get('pid')} on {owner.get('host')} since {owner.get('since')}"


def _owner_path(lock: Path) -> Path:
    return lock.with_name(lock.name + ".owner")
