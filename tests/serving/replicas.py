"""`python -m llmops.serving --workers 2` for the replica tests: started in a session of
its own (so a signal reaches every process of it), ready once both replicas answer."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.serving.conftest import free_port, gateway_env

REDIS = "redis://127.0.0.1:6379/0"


def _redis_up() -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(REDIS, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


needs_redis = pytest.mark.skipif(not _redis_up(), reason="no Redis at 127.0.0.1:6379")


class Replicas:
    """Two gateway processes behind one port, with limits in Redis and `env` on top."""

    def __init__(self, home: Path, routes: Path, tmp: Path, **env: str) -> None:
        self.home, self.routes, self.tmp = home, routes, tmp
        self.env = {"LLMOPS_GATEWAY__REDIS_URL": REDIS, **env}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.readyz: dict[str, dict[str, object]] = {}  # replica -> its /readyz body

    def start(self) -> Replicas:
        """Start, and wait (at most 2 minutes) until both replicas answer /readyz."""
        self.log = (self.tmp / f"replicas-{time.monotonic_ns()}.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "llmops.serving", "--port", str(self.port), "--routes",
             str(self.routes), "--workers", "2", "--drain", "5"],
            env=gateway_env(self.home, **self.env), stdout=self.log,
            stderr=subprocess.STDOUT, start_new_session=True)
        self.readyz = {}
        deadline = time.monotonic() + 120
        while len(self.readyz) < 2:
            assert self.proc.poll() is None, "the gateway exited at start"
            assert time.monotonic() < deadline, f"replicas ready: {sorted(self.readyz)}"
            try:
                with httpx.Client(base_url=self.url, timeout=2) as c:  # a new connection
                    r = c.get("/readyz")
                if r.status_code == 200:
                    self.readyz[r.json()["replica"]] = r.json()
            except httpx.TransportError:
                time.sleep(0.2)
        return self

    def kill(self, sig: int = signal.SIGTERM) -> None:
        """Signal every process of the gateway and wait until all are gone."""
        os.killpg(self.proc.pid, sig)
        self.proc.wait(60)
        deadline = time.monotonic() + 30  # the workers too, not only the supervisor
        while time.monotonic() < deadline:
            try:
                os.killpg(self.proc.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        self.log.close()
