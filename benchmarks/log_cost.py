"""Where the request log's cost sits: CPU per request of each gateway thread, log on and off.

`gateway.py` measures the log's cost as a ratio of requests/s; this splits it by
thread. One `llmops serve` per arm on the mock OpenAI upstream, the same lean
keep-alive client, interleaved rounds (the median counts):
- on: the request log and a 90/10 A/B;
- log: the request log, one variant (so A/B's own cost shows as on - log);
- off: `--no-request-log`, one variant.

For each arm it prints requests/s and the server's CPU time per request split into
the event loop's thread (parsing, routing, the chain, the row built and handed
over, the wake-up when its commit is done) and the other threads (the store's
writer: SQLite's insert and commit, most of it with the GIL released). Read from
/proc (Linux only).

Run: `python benchmarks/log_cost.py [--seconds 8] [--concurrency 10 50]`
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gateway import _load, make_keys, routes, setup_home, start_llmops, start_mock, stop

ARMS = {"on": (True, True), "log": (True, False), "off": (False, False)}


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) of the process's main thread and of all others."""
    out = {"loop": 0.0, "other": 0.0}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except OSError:  # the thread ended meanwhile
            continue
        fields = stat.rsplit(")", 1)[1].split()
        out["loop" if tid == str(pid) else "other"] += (int(fields[11]) + int(fields[12]))
    return {k: v / os.sysconf("SC_CLK_TCK") for k, v in out.items()}


def run_arm(url: str, pid: int, key: str, c: int, seconds: float) -> dict[str, float]:
    asyncio.run(_load(url, "bench", key, c, 1.0, 0.0))  # warm
    before = thread_cpu(pid)
    lat, errors, _, done = asyncio.run(_load(url, "bench", key, c, seconds, 0.0))
    after = thread_cpu(pid)
    if errors:
        raise RuntimeError(f"{errors} failed requests")
    per = {k: (after[k] - before[k]) / done * 1e6 for k in before}
    return {"rps": len(lat) / seconds, **per, "total": sum(per.values())}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[10, 50])
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="llmops-bench-logcost-"))
    mock, mock_url = start_mock()
    procs = []
    try:
        home = tmp / "home"
        home.mkdir()
        setup_home(home, mock_url)
        key, = make_keys(("bench", "client"))
        servers = {}
        for arm, (log, ab) in ARMS.items():
            proc, url = start_llmops(home, routes(tmp / f"{arm}.yaml", ab), log,
                                     tmp / f"{arm}.log")
            procs.append(proc)
            servers[arm] = (proc.pid, url)
        for c in args.concurrency:
            runs: dict[str, list[dict[str, float]]] = {arm: [] for arm in ARMS}
            for _ in range(args.rounds):
                for arm, (pid, url) in servers.items():
                    runs[arm].append(run_arm(url, pid, key, c, args.seconds))
            med = {arm: {k: statistics.median(r[k] for r in rs) for k in rs[0]}
                   for arm, rs in runs.items()}
            print(f"concurrency {c} (median of {args.rounds} rounds, {args.seconds:g} s each)")
            for arm, m in med.items():
                print(f"  {arm:4} {m['rps']:7.0f} req/s  CPU/req {m['total']:4.0f} us = "
                      f"loop thread {m['loop']:4.0f} + writer and others {m['other']:4.0f}")
            on, off = med["on"], med["off"]
            print(f"  log+A/B on/off req/s {on['rps'] / off['rps']:.3f}; the log adds "
                  f"{on['loop'] - off['loop']:.0f} us on the loop thread and "
                  f"{on['other'] - off['other']:.0f} us on the writer; A/B adds "
                  f"{on['total'] - med['log']['total']:+.0f} us")
        return 0
    finally:
        for p in [*procs, mock]:
            stop(p)


if __name__ == "__main__":
    raise SystemExit(main())
