"""What the gateway's refusals and votes cost, against served chat requests in the same run.

One `llmops serve` process with the rate limit lifted, on the mock OpenAI upstream
(`tests/mock_openai.py`), and a second one whose keys may send 1 request/s. At
concurrency 50, with the lean keep-alive client of `gateway.py`, interleaved over 3
rounds (the median counts):
- chat: served chat requests (the baseline: what a refusal must cost less than);
- votes: POST /v1/feedback by a reviewer key, each durable before its 200;
- 401: chat requests with a key nobody knows (past the failed-authentication burst
  of the address these turn into 429s, as the gateway is built to do: both counted);
- 429: chat requests with a valid key over its rate.

Goals (issue "hardening"): votes >= 1,500/s with p99 under 50 ms; 401 and 429
answers >= 5,000/s; a refusal costs less than a served request (refusals/s over
chat/s > 1). The exit status is 1 if a goal is missed.

Run: `python benchmarks/hardening.py [--seconds 8]`
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gateway import (  # the sibling benchmark's client and arms
    _Conn,
    cpu_seconds,
    make_keys,
    setup_home,
    start_llmops,
    start_mock,
    stop,
)

Q = [{"role": "user", "content": "What does the with statement do?"}]
SEED_ROWS = 20_000


async def _load(url: str, path: str, key: str, bodies: list[bytes], concurrency: int,
                seconds: float, warmup: float) -> tuple[list[float], dict[int, int], int]:
    u = httpx.URL(url)
    headers = f"Authorization: Bearer {key}\r\n"
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    done = 0
    start = time.perf_counter()
    measure_from, end = start + warmup, start + warmup + seconds

    async def worker(n: int) -> None:
        nonlocal done
        conn = _Conn(u.host, u.port or 80)
        i = n
        while (now := time.perf_counter()) < end:
            t0 = time.perf_counter()
            try:
                status = await conn.post(path, bodies[i % len(bodies)], headers)
            except (OSError, asyncio.IncompleteReadError, ValueError):
                status, conn = 0, _Conn(u.host, u.port or 80)
            t1 = time.perf_counter()
            done += 1
            if now >= measure_from and t1 <= end:
                latencies.append(t1 - t0)
                statuses[status] = statuses.get(status, 0) + 1
            i += concurrency
        if conn.writer is not None:
            conn.writer.close()

    await asyncio.gather(*(worker(n) for n in range(concurrency)))
    return latencies, statuses, done


def measure(arm: str, url: str, path: str, key: str, bodies: list[bytes], c: int,
            seconds: float, warmup: float, pid: int) -> dict[str, Any]:
    c0 = cpu_seconds(pid)
    lat, statuses, done = asyncio.run(_load(url, path, key, bodies, c, seconds, warmup))
    c1 = cpu_seconds(pid)
    lat.sort()
    q = statistics.quantiles(lat, n=100, method="inclusive") if len(lat) > 1 else [0.0] * 99
    cpu = (c1 - c0) / done * 1e6 if c0 is not None and c1 is not None and done else 0.0
    r = {"arm": arm, "rps": len(lat) / seconds, "p50_ms": q[49] * 1000, "p99_ms": q[98] * 1000,
         "cpu_us": cpu, "statuses": statuses}
    print(f"  {arm:6} c={c:<3} {r['rps']:8.1f} answers/s  p50 {r['p50_ms']:6.1f} ms  "
          f"p99 {r['p99_ms']:6.1f} ms  cpu/req {cpu:6.0f} us  statuses {statuses}", flush=True)
    return r


def _routes(path: Path, rate: float, burst: int) -> Path:
    path.write_text(yaml.safe_dump({
        "rate_limit": {"requests_per_s": rate, "burst": burst},
        "endpoints": {"bench": {"variants": [{"ref": "chain.benchchat@production",
                                              "weight": 100}],
                                "limits": {"max_tokens": 64, "timeout_s": 60,
                                           "max_concurrency": 10_000}}}}))
    return path


def _seed(n: int) -> list[str]:
    """Request rows to vote on, written straight into the log."""
    from llmops.store import Store
    from llmops.store.requests import RequestRow

    store = Store.open()
    ids = [f"chatcmpl-seed{i:08d}" for i in range(n)]
    for i in range(0, n, 500):
        futs = [store.submit(store.insert_request_op(RequestRow(
            id=rid, endpoint="bench", status=200, variant="production", messages=Q,
            answer="It manages a context."))) for rid in ids[i:i + 500]]
        for f in futs:
            f.result()
    store.close()
    return ids


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=50)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="llmops-bench-hard-"))
    mock, mock_url = start_mock()
    procs: list[Any] = [mock]
    try:
        home = tmp / "home"
        home.mkdir()
        setup_home(home, mock_url)
        client, reviewer = make_keys(("bench", "client"), ("reviewer", "reviewer"))
        ids = _seed(SEED_ROWS)
        open_, url = start_llmops(home, _routes(tmp / "open.yaml", 1e6, 1_000_000), True,
                                  tmp / "open.log")
        procs.append(open_)
        tight, tight_url = start_llmops(home, _routes(tmp / "tight.yaml", 1.0, 1), True,
                                        tmp / "tight.log")
        procs.append(tight)
        chat = [json.dumps({"model": "bench", "messages": Q, "max_tokens": 32,
                            "user": f"u{i}"}).encode() for i in range(64)]
        votes = [json.dumps({"request_id": rid, "rating": "up" if i % 3 else "down"}).encode()
                 for i, rid in enumerate(ids)]
        unknown = "llmops-k000000000000-" + "A" * 43
        arms = {
            "chat": (url, "/v1/chat/completions", client, chat, open_.pid),
            "votes": (url, "/v1/feedback", reviewer, votes, open_.pid),
            "401": (url, "/v1/chat/completions", unknown, chat, open_.pid),
            "429": (tight_url, "/v1/chat/completions", client, chat, tight.pid),
        }
        c = args.concurrency
        print(f"concurrency {c}, {args.seconds:g} s each after {args.warmup:g} s warm-up, "
              f"{args.rounds} rounds interleaved (the median counts)")
        runs: dict[str, list[dict[str, Any]]] = {arm: [] for arm in arms}
        for _ in range(args.rounds):
            for arm, (u, path, key, bodies, pid) in arms.items():
                runs[arm].append(measure(arm, u, path, key, bodies, c, args.seconds,
                                         args.warmup, pid))
        med = {arm: sorted(rs, key=lambda r: r["rps"])[len(rs) // 2] for arm, rs in runs.items()}
        return report(med)
    finally:
        for p in procs:
            stop(p)


def report(med: dict[str, dict[str, Any]]) -> int:
    chat, votes = med["chat"], med["votes"]
    checks = [
        ("votes/s", votes["rps"], ">=", 1500.0),
        ("votes p99 ms", votes["p99_ms"], "<=", 50.0),
        ("votes all 200", float(set(votes["statuses"]) == {200}), ">=", 1.0),
        ("401 answers/s", med["401"]["rps"], ">=", 5000.0),
        ("429 answers/s", med["429"]["rps"], ">=", 5000.0),
        ("401 answers/s / chat req/s", med["401"]["rps"] / chat["rps"], ">=", 1.0),
        ("429 answers/s / chat req/s", med["429"]["rps"] / chat["rps"], ">=", 1.0),
        ("votes/s / chat req/s", votes["rps"] / chat["rps"], ">=", 0.0),
    ]
    print("\nratios and goals")
    missed = 0
    for name, value, op, goal in checks:
        ok = value >= goal if op == ">=" else value <= goal
        missed += not ok
        print(f"  {name:28} {value:10.3f}   (goal {op} {goal:g}){'' if ok else '  MISSED'}")
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
