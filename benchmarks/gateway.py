"""The gateway's overhead, against the same mock OpenAI upstream on loopback.

Arms (each a separate process, the same client, concurrency 10 and 50):
- mock: the mock upstream called directly (the baseline of "added latency");
- llmops: `llmops serve`, request log and A/B (90/10 over two chain versions) on;
- llmops-fsync: the same with the log at `?synchronous=full` (survives a power cut);
- llmops-nolog: `llmops serve --no-request-log`, one variant (log and A/B off);
- litellm: the LiteLLM proxy (`litellm[proxy]`, one worker) routing to the mock.

Prints requests/s, p50/p99 latency and the server's CPU time per request per
arm, the latency added over the mock, and the ratios the issue sets goals for:
- llmops requests/s >= 5x LiteLLM's; added p50 and p99 <= 0.2x LiteLLM's;
- logging and A/B cost <= 5% of requests/s (llmops / llmops-nolog >= 0.95).
The exit status is 1 if a goal is missed. On a shared machine requests/s
moves with the neighbours' load; CPU per request (Linux) moves much less, so
the log's cost is also printed as a CPU ratio.

LiteLLM lives in its own virtualenv (its pins would move this project's
packages): `python -m venv /work/litellm-venv && /work/litellm-venv/bin/pip
install 'litellm[proxy]'`, or point `--litellm` at any `litellm` executable.

Run: `python benchmarks/gateway.py [--seconds 10] [--litellm PATH] [--json out.json]`
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

REPO = Path(__file__).resolve().parent.parent
QUESTION = [{"role": "user", "content": "What does the with statement do?"}]
DEFAULT_LITELLM = ["/work/litellm-venv/bin/litellm", shutil.which("litellm") or ""]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 120,
               headers: dict[str, str] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2, headers=headers).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready within {timeout:.0f} s")


def start_mock() -> tuple[subprocess.Popen[bytes], str]:
    """The mock OpenAI upstream on a free loopback port, ready: (process, its /v1 URL)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    proc = subprocess.Popen([sys.executable, str(REPO / "tests" / "mock_openai.py"), "--port",
                             str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        wait_ready(f"{url.removesuffix('/v1')}/docs", proc)
    except BaseException:
        stop(proc)
        raise
    return proc, url


def make_keys(*holders: tuple[str, str]) -> list[str]:
    """A key per (name, role) in the store of the current LLMOPS_HOME."""
    from llmops.serving.keys import create_key
    from llmops.store import Store

    store = Store.open()
    try:
        return [create_key(store, name=name, role=role)[1] for name, role in holders]
    finally:
        store.close()


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


# -- the client ---------------------------------------------------------------------
@dataclass
class Result:
    arm: str
    concurrency: int
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    cpu_us: float | None = None  # the server's CPU time per request, microseconds

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def cpu_text(self) -> str:
        return "cpu/req    n/a" if self.cpu_us is None else f"cpu/req {self.cpu_us:6.0f} us"


class _Conn:
    """One keep-alive HTTP/1.1 connection: a lean client, so the load generator is not
    what is measured (httpx's pool costs more CPU per request than the mock itself)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes, headers: str) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{headers}"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        lines = head.decode("latin-1").lower().split("\r\n")
        length = next((int(h.split(":", 1)[1]) for h in lines if h.startswith("content-length:")),
                      None)
        if length is not None:
            await self.reader.readexactly(length)
        elif any(h.startswith("transfer-encoding:") and "chunked" in h for h in lines):
            while True:
                size = int((await self.reader.readline()).strip() or b"0", 16)
                await self.reader.readexactly(size + 2)
                if size == 0:
                    break
        if any(h.strip() == "connection: close" for h in lines):
            self.writer.close()
            self.writer = None
        return status


async def _load(url: str, model: str, key: str, concurrency: int, seconds: float,
                warmup: float) -> tuple[list[float], int, float, int]:
    u = httpx.URL(url)
    path = u.path.rstrip("/") + "/chat/completions"
    headers = f"Authorization: Bearer {key}\r\n"
    latencies: list[float] = []
    errors = done = 0
    start = time.perf_counter()
    measure_from = start + warmup
    end = measure_from + seconds

    async def worker(n: int) -> None:
        nonlocal errors, done
        conn = _Conn(u.host, u.port or 80)
        i = 0
        while (now := time.perf_counter()) < end:
            body = json.dumps({"model": model, "messages": QUESTION, "max_tokens": 32,
                               "user": f"user-{n}-{i}"}).encode()
            t0 = time.perf_counter()
            try:
                ok = await conn.post(path, body, headers) == 200
            except (OSError, asyncio.IncompleteReadError, ValueError):
                ok, conn = False, _Conn(u.host, u.port or 80)
            t1 = time.perf_counter()
            done += 1
            if now >= measure_from and t1 <= end:
                if ok:
                    latencies.append(t1 - t0)
                else:
                    errors += 1
            i += 1
        if conn.writer is not None:
            conn.writer.close()

    await asyncio.gather(*(worker(n) for n in range(concurrency)))
    return latencies, errors, seconds, done


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time of a process and its children that it waited for (Linux)."""
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return sum(int(x) for x in f[11:15]) / os.sysconf("SC_CLK_TCK")


def measure(arm: str, url: str, model: str, key: str, concurrency: int, seconds: float,
            warmup: float, pid: int | None = None) -> Result:
    c0 = cpu_seconds(pid)
    lat, errors, secs, done = asyncio.run(_load(url, model, key, concurrency, seconds, warmup))
    c1 = cpu_seconds(pid)
    lat.sort()
    q = statistics.quantiles(lat, n=100, method="inclusive") if len(lat) > 1 else [0.0] * 99
    cpu_us = (c1 - c0) / done * 1e6 if c0 is not None and c1 is not None and done else None
    r = Result(arm, concurrency, len(lat), errors, secs, q[49] * 1000, q[98] * 1000, cpu_us)
    print(f"  {arm:13} c={concurrency:<3} {r.rps:8.1f} req/s  p50 {r.p50_ms:7.1f} ms  "
          f"p99 {r.p99_ms:7.1f} ms  {r.cpu_text}  errors {errors}", flush=True)
    return r


# -- the arms -----------------------------------------------------------------------
def setup_home(home: Path, mock_url: str) -> None:
    """Register two versions of an openai-backend chat chain on the mock (production, staging)."""
    os.environ.update(LLMOPS_HOME=str(home), LLMOPS_PROJECT_DIR=str(REPO))
    from llmops import chains, prompts
    from llmops.config import reset_settings

    reset_settings()
    prompts.push([REPO / "prompts" / "assistant.yaml"])
    prompts.promote("assistant", 1, "production")
    code = (REPO / "chains" / "chat.py").read_text()
    for version, alias in ((1, "production"), (2, "staging")):
        folder = home.parent / f"chain-v{version}"
        folder.mkdir()
        (folder / "benchchat.py").write_text(code)
        (folder / "benchchat.yaml").write_text(yaml.safe_dump({
            "name": "benchchat", "kind": "chat", "description": f"bench chat {version}",
            "prompt": "assistant@production",
            "llm": {"backend": "openai", "base_url": mock_url, "model": "mock",
                    "max_retries": 0, "max_tokens": 32}}))
        v = chains.log(folder / "benchchat.py").version
        chains.promote("benchchat", v, alias)


def routes(path: Path, ab: bool) -> Path:
    variants = [{"ref": "chain.benchchat@production", "weight": 90}]
    if ab:
        variants.append({"ref": "chain.benchchat@staging", "weight": 10})
    path.write_text(yaml.safe_dump({
        "rate_limit": {"requests_per_s": 1e6, "burst": 1_000_000},
        "endpoints": {"bench": {"variants": variants, "limits": {
            "max_tokens": 64, "timeout_s": 60, "max_concurrency": 10_000}}}}))
    return path


def start_llmops(home: Path, routes_path: Path, log: bool, out: Path,
                 fsync: bool = False) -> tuple[Any, str]:
    port = free_port()
    env = {**os.environ, "LLMOPS_HOME": str(home), "LLMOPS_PROJECT_DIR": str(REPO),
           "MLFLOW_DISABLE_TELEMETRY": "true"}  # as LiteLLM's below: no phoning home
    if fsync:  # a power cut loses no acknowledged row either
        env["LLMOPS_STORE_URL"] = f"sqlite:///{home / 'requests.db'}?synchronous=full"
    cmd = [sys.executable, "-m", "llmops.serving", "--port", str(port), "--routes",
           str(routes_path)] + ([] if log else ["--no-request-log"])
    proc = subprocess.Popen(cmd, env=env, stdout=out.open("wb"), stderr=subprocess.STDOUT)
    wait_ready(f"http://127.0.0.1:{port}/readyz", proc)
    return proc, f"http://127.0.0.1:{port}/v1"


def start_litellm(exe: str, mock_url: str, tmp: Path) -> tuple[Any, str]:
    port = free_port()
    cfg = tmp / "litellm.yaml"
    cfg.write_text(yaml.safe_dump({
        "model_list": [{"model_name": "bench", "litellm_params": {
            "model": "openai/mock", "api_base": mock_url, "api_key": "sk-mock"}}],
        "litellm_settings": {"telemetry": False, "drop_params": True},
        "general_settings": {"master_key": "sk-bench"}}))
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR",
           "LITELLM_TELEMETRY": "False", "DISABLE_ADMIN_UI": "True"}
    proc = subprocess.Popen([exe, "--config", str(cfg), "--port", str(port), "--host",
                             "127.0.0.1", "--num_workers", "1"], env=env,
                            stdout=(tmp / "litellm.log").open("wb"), stderr=subprocess.STDOUT)
    wait_ready(f"http://127.0.0.1:{port}/health/liveliness", proc, timeout=180)
    return proc, f"http://127.0.0.1:{port}/v1"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="measured time per run, s")
    ap.add_argument("--warmup", type=float, default=2.0, help="unmeasured start, s")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds per arm")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[10, 50])
    ap.add_argument("--litellm", default=next((p for p in DEFAULT_LITELLM if p and
                                               Path(p).exists()), ""))
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="llmops-bench-gw-"))
    mock, mock_url = start_mock()
    procs: list[Any] = [mock]
    results: list[Result] = []
    try:
        home = tmp / "home"
        home.mkdir()
        setup_home(home, mock_url)
        (key,) = make_keys(("bench", "client"))

        starts: list[tuple[str, Any]] = [
            ("mock", lambda: (mock, mock_url, "mock", "none")),
            ("llmops", lambda: (*start_llmops(home, routes(tmp / "ab.yaml", True), True,
                                              tmp / "llmops.log"), "bench", key)),
            ("llmops-fsync", lambda: (*start_llmops(home, routes(tmp / "ab.yaml", True), True,
                                                    tmp / "llmops-fsync.log", fsync=True),
                                       "bench", key)),
            ("llmops-nolog", lambda: (*start_llmops(home, routes(tmp / "one.yaml", False), False,
                                                    tmp / "llmops-nolog.log"), "bench", key)),
        ]
        if args.litellm:
            starts.append(("litellm", lambda: (*start_litellm(args.litellm, mock_url, tmp),
                                               "bench", "sk-bench")))
        else:
            print("litellm: not found (see the docstring); its arm is skipped")
        arms: dict[str, tuple[str, str, str, int]] = {}
        for arm, start in starts:  # all up at once, idle until their turn
            try:
                proc, url, model, k = start()
            except Exception as exc:
                print(f"  {arm}: could not start: {exc}")
                continue
            if proc is not mock:
                procs.append(proc)
            arms[arm] = (url, model, k, proc.pid)
        print(f"concurrency {args.concurrency}, {args.seconds:g} s each after "
              f"{args.warmup:g} s warm-up, arms interleaved over {args.rounds} rounds "
              f"(the median round counts); {os.cpu_count()} cores")
        for c in args.concurrency:
            runs: dict[str, list[Result]] = {arm: [] for arm in arms}
            for _ in range(args.rounds):
                for arm, (url, model, k, pid) in arms.items():
                    runs[arm].append(measure(arm, url, model, k, c, args.seconds, args.warmup,
                                             pid))
            for rs in runs.values():
                results.append(sorted(rs, key=lambda r: r.rps)[len(rs) // 2])
        missed = report(results, args.concurrency)
        if args.json:
            args.json.write_text(json.dumps([r.__dict__ | {"rps": r.rps} for r in results],
                                            indent=2))
    finally:
        for p in procs:
            stop(p)
    return 1 if missed else 0


def _added(r: Result, base: Result, q: str) -> float:
    return max(getattr(r, q) - getattr(base, q), 1e-9)


def report(results: list[Result], concurrencies: list[int]) -> list[str]:
    """Print the medians, the added latency and the goals; the goals missed."""
    by = {(r.arm, r.concurrency): r for r in results}
    missed: list[str] = []

    def goal(c: int, name: str, value: float, ok: bool, limit: str) -> None:
        print(f"  c={c:<3} {name:26} {value:7.3f}   (goal {limit}){'' if ok else '  MISSED'}")
        if not ok:
            missed.append(f"c={c} {name}")

    print("\nmedian rounds")
    for r in results:
        print(f"  {r.arm:13} c={r.concurrency:<3} {r.rps:8.1f} req/s  p50 {r.p50_ms:7.1f} ms  "
              f"p99 {r.p99_ms:7.1f} ms  {r.cpu_text}")
    print("\nadded latency over the mock (ms), and ratios")
    for c in concurrencies:
        base = by.get(("mock", c))
        if base is None:
            continue
        for arm in ("llmops", "llmops-fsync", "llmops-nolog", "litellm"):
            r = by.get((arm, c))
            if r:
                print(f"  c={c:<3} {arm:13} added p50 {r.p50_ms - base.p50_ms:7.1f}  "
                      f"added p99 {r.p99_ms - base.p99_ms:7.1f}")
        ours, off, lite = by.get(("llmops", c)), by.get(("llmops-nolog", c)), by.get(("litellm", c))
        if ours and lite:
            p50 = _added(ours, base, "p50_ms") / _added(lite, base, "p50_ms")
            p99 = _added(ours, base, "p99_ms") / _added(lite, base, "p99_ms")
            goal(c, "llmops/litellm req/s", ours.rps / lite.rps, ours.rps >= 5 * lite.rps, ">= 5")
            goal(c, "added p50 llmops/litellm", p50, p50 <= 0.2, "<= 0.2")
            goal(c, "added p99 llmops/litellm", p99, p99 <= 0.2, "<= 0.2")
        fsync = by.get(("llmops-fsync", c))
        if ours and off:
            goal(c, "log+A/B on / off req/s", ours.rps / off.rps, ours.rps >= 0.95 * off.rps,
                 ">= 0.95")
            if ours.cpu_us and off.cpu_us:
                print(f"  c={c:<3} {'same, CPU/req off / on':26} {off.cpu_us / ours.cpu_us:7.3f}")
        if fsync and off:
            print(f"  c={c:<3} {'same, synchronous=full':26} {fsync.rps / off.rps:7.3f}")
    if missed:
        print(f"\ngoals missed: {'; '.join(missed)}")
    return missed


if __name__ == "__main__":
    sys.exit(main())
