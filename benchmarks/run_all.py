"""Run every benchmark in turn (`make bench`); exits non-zero if one fails its limits."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = ["index_refresh.py", "chains.py", "local_batching.py", "gateway.py", "log_cost.py",
           "hardening.py", "review_pages.py", "monitor.py", "eval_overhead.py", "finetune.py",
           "tabular.py", "replicas.py", "spark_embed.py", "embeddings.py"]


def main() -> int:
    failed = []
    for name in SCRIPTS:
        print(f"\n===== {name}", flush=True)
        if subprocess.run([sys.executable, str(HERE / name)], check=False).returncode != 0:
            failed.append(name)
    if failed:
        print(f"\nover their limits or failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
