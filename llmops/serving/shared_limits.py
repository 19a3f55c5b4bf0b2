"""Limits that hold across gateway processes and hosts: Redis.

With `gateway.redis_url` set, every replica of the gateway counts against the same
limits: the per-key rate limit and the failed-authentication limit per address (token
buckets) and the per-key concurrency cap of each endpoint (slots). Each decision is one
Lua script, so it is atomic on the Redis server, and it reads the server's clock (TIME),
so replicas on hosts whose clocks disagree still share one bucket.

- Token bucket: a hash {tokens, at} per key; refilled at `rate`/s up to `burst`,
  expiring when a full bucket would be (an idle key costs nothing).
- Slots: a sorted set per (endpoint, key) of request ids scored by when their hold
  lapses (the endpoint's timeout and a margin); entries of a replica that died lapse on
  their own, so a crash never leaks a slot for longer than that.

When Redis does not answer, a decision falls back to the replica's own limiter (logged
once a minute): a limit held per process, not an outage.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from typing import Any

from llmops.errors import ConfigError
from llmops.serving.limits import RateLimiter

log = logging.getLogger("llmops.gateway")

BUCKET = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(b[1]) or burst
local at = tonumber(b[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst / rate) * 1000) + 1000)
return tostring(wait)
"""

SLOT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local held = redis.call('ZCARD', KEYS[1])
if held >= tonumber(ARGV[1]) then return held end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2]) * 1000))
return -1
"""


class SharedLimits:
    """Token buckets and concurrency slots in Redis, shared by every gateway replica."""

    def __init__(self, url: str, *, prefix: str = "llmops") -> None:
        try:
            import redis.asyncio as aioredis
        except ImportError:
            raise ConfigError("gateway.redis_url needs the redis package: pip install "
                              "'llmops[redis]'") from None

        self.url, self.prefix = url, prefix
        self.client: Any = aioredis.from_url(url, socket_timeout=0.5,
                                             socket_connect_timeout=0.5)
        self._bucket = self.client.register_script(BUCKET)
        self._slot = self.client.register_script(SLOT)
        self._warned = 0.0

    def _down(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._warned > 60:
            self._warned = now
            log.error("Redis at %s does not answer (%s): limits hold per process meanwhile",
                      self.url, exc)

    async def take(self, kind: str, key: str, fallback: RateLimiter) -> float | None:
        """A token of `key`'s bucket of `kind` (`rate`, `auth`): None if the request may
        go, else the seconds until it may. `fallback` gives the rate and burst."""
        try:
            wait = float(await self._bucket(keys=[f"{self.prefix}:{kind}:{key}"],
                                            args=[fallback.rate, fallback.burst]))
        except Exception as exc:  # redis errors, timeouts, a closed connection
            self._down(exc)
            return fallback.acquire(key)
        return None if wait <= 0 else wait

    async def hold(self, endpoint: str, key: str, limit: int, ttl_s: float) -> str | None:
        """A slot of `key` on `endpoint`: its id (give it back with `release`), or None
        when the key holds `limit` already (on all replicas together)."""
        token = uuid.uuid4().hex
        try:
            held = int(await self._slot(keys=[f"{self.prefix}:slots:{endpoint}:{key}"],
                                        args=[limit, ttl_s, token]))
        except Exception as exc:
            self._down(exc)
            return ""  # unknown: this replica's own count decides
        return token if held < 0 else None

    async def release(self, endpoint: str, key: str, token: str) -> None:
        if not token:
            return
        try:
            await self.client.zrem(f"{self.prefix}:slots:{endpoint}:{key}", token)
        except Exception as exc:
            self._down(exc)

    async def ping(self) -> bool:
        try:
            return bool(await self.client.ping())
        except Exception as exc:
            self._down(exc)
            return False

    async def close(self) -> None:
        with contextlib.suppress(Exception):  # already gone
            await self.client.aclose()
