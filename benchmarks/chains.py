"""Chain benchmarks: framework overhead, and batch throughput through a remote backend.

    .venv/bin/python benchmarks/chains.py             # about 3 minutes on 2 cores
    .venv/bin/python benchmarks/chains.py --only batch

1. overhead: `chain.rag_qa` with the local backend (SmolLM2) against the same
   retrieval (`llmops.index.query`, same k) plus a raw transformers `generate`
   on the same rendered messages with the same decoding settings. Interleaved,
   best of N per arm; prints the ratio (goal: at most 1.10).
2. batch: `mlflow.pyfunc` predict of 100 questions through a chain whose LLM
   is the `openai` backend pointed at a mock endpoint with a fixed service time,
   once one row at a time and once concurrently, against the mock's own
   ceiling (100 concurrent direct requests). Prints questions per second.

Runs in a temporary LLMOPS_HOME; builds the reference index there first.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

QUESTIONS = [
    "How does the with statement work?",
    "What does the pass statement do?",
    "How do I define a function with default arguments?",
]


def overhead(rounds: int, max_tokens: int) -> float:
    import torch

    import llmops.chains as chains
    import llmops.index as index
    import llmops.prompts as prompts
    from llmops.hub import load_causal_lm

    print("building the reference index ...", flush=True)
    print("  " + index.refresh(progress=False).summary())
    prompts.push([REPO / "prompts" / "qa.yaml"])
    prompts.promote("qa", prompts.versions("qa")[-1].version, "production")
    logged = chains.log(REPO / "chains" / "rag_qa.py")
    chain = chains.load(f"rag_qa/{logged.version}")
    cfg = chain.config
    assert cfg.retrieval is not None
    model, tok = load_causal_lm()

    def ours(q: str) -> None:
        chain.invoke(q, max_tokens=max_tokens)

    def raw(q: str) -> None:
        hits = index.query(q, k=cfg.retrieval.k)  # type: ignore[union-attr]
        context = "\n\n".join(f"[{h.title}]\n{h.text}" for h in hits)[
            : cfg.retrieval.max_context_chars  # type: ignore[union-attr]
        ]
        messages = chain.prompt.render(context=context, question=q)
        inputs = tok.apply_chat_template(messages, add_generation_prompt=True,
                                         return_tensors="pt", return_dict=True)
        with torch.inference_mode():
            model.generate(**inputs, max_new_tokens=max_tokens, do_sample=False,
                           temperature=None, top_p=None, top_k=None,
                           repetition_penalty=cfg.llm.repetition_penalty,
                           pad_token_id=tok.pad_token_id or tok.eos_token_id)

    ours(QUESTIONS[0])
    raw(QUESTIONS[0])  # warm-up
    t_ours: list[float] = []
    t_raw: list[float] = []
    for r in range(rounds):
        for q in QUESTIONS:
            arms = [(ours, t_ours), (raw, t_raw)]
            for fn, sink in (arms if r % 2 == 0 else arms[::-1]):
                start = time.perf_counter()
                fn(q)
                sink.append(time.perf_counter() - start)
    # Per question, the best of the rounds; then the sum over questions.
    n = len(QUESTIONS)
    best_ours = sum(min(t_ours[i::n]) for i in range(n))
    best_raw = sum(min(t_raw[i::n]) for i in range(n))
    ratio = best_ours / best_raw
    print(f"overhead: chain {best_ours:.2f} s vs retrieval + raw generate {best_raw:.2f} s "
          f"over {n} questions, {max_tokens} new tokens each")
    print(f"  ratio {ratio:.3f}  (goal <= 1.10)  median per call: chain "
          f"{statistics.median(t_ours):.2f} s, raw {statistics.median(t_raw):.2f} s")
    return ratio


def batch(n: int, delay_s: float, concurrency: int) -> None:
    import httpx
    import mlflow
    import pandas as pd

    import llmops.chains as chains
    import llmops.prompts as prompts
    from llmops.config import get_settings
    from tests.mock_openai import MockOpenAI

    with MockOpenAI() as mock:
        mock.state.delay_s = delay_s
        folder = Path(tempfile.mkdtemp())
        shutil.copy(REPO / "chains" / "chat.py", folder / "chat.py")
        (folder / "chat.yaml").write_text(
            "name: chat\nkind: chat\ndescription: benchmark\nprompt: assistant@production\n"
            f"llm: {{backend: openai, base_url: '{mock.base_url}', max_tokens: 16}}\n"
        )
        prompts.push([REPO / "prompts" / "assistant.yaml"])
        prompts.promote("assistant", prompts.versions("assistant")[-1].version, "production")
        logged = chains.log(folder / "chat.py")
        s = get_settings()
        mlflow.set_tracking_uri(s.mlflow_tracking_uri)
        mlflow.set_registry_uri(s.mlflow_registry_uri)
        model = mlflow.pyfunc.load_model(f"models:/chain.chat/{logged.version}")
        df = pd.DataFrame({"question": [f"question number {i}?" for i in range(n)]})

        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}
        with httpx.Client(base_url=mock.base_url, limits=httpx.Limits(max_connections=n)) as c:
            c.post("/chat/completions", json=body)
            start = time.perf_counter()
            with ThreadPoolExecutor(concurrency) as pool:
                list(pool.map(lambda _: c.post("/chat/completions", json=body).raise_for_status(),
                              range(n)))
            ceiling = n / (time.perf_counter() - start)

        start = time.perf_counter()
        model.predict(df.head(20), params={"max_concurrency": 1})
        sequential = 20 / (time.perf_counter() - start)
        calls_before = mock.state.calls
        start = time.perf_counter()
        out = model.predict(df, params={"max_concurrency": concurrency})
        concurrent = n / (time.perf_counter() - start)
        assert len(out) == n and mock.state.calls - calls_before == n
    print(f"batch: {n} questions, mock service time {delay_s * 1000:.0f} ms, "
          f"concurrency {concurrency}")
    print(f"  one at a time  {sequential:7.1f} q/s")
    print(f"  concurrent     {concurrent:7.1f} q/s  ({concurrent / ceiling:.0%} of the mock's "
          f"ceiling, {concurrent / sequential:.1f}x one at a time)")
    print(f"  mock ceiling   {ceiling:7.1f} q/s  (direct requests, same concurrency)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=["overhead", "batch"])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=24)
    parser.add_argument("--questions", type=int, default=100)
    parser.add_argument("--delay-ms", type=float, default=50.0)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="llmops-bench-")
    os.environ["LLMOPS_HOME"] = home
    os.environ.setdefault("LLMOPS_MODEL_CACHE", str(REPO / ".llmops" / "models"))
    try:
        if args.only in (None, "batch"):
            batch(args.questions, args.delay_ms / 1000, args.concurrency)
        if args.only in (None, "overhead"):
            overhead(args.rounds, args.max_tokens)
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
