"""Batched local generation against the one-at-a-time path, at N concurrent callers.

    .venv/bin/python benchmarks/local_batching.py               # about 4 minutes on 2 cores
    .venv/bin/python benchmarks/local_batching.py --callers 8 --prompts 16 --rounds 2

The callers are N threads that each take the next prompt from a shared list
until it is empty: RAG-sized prompts (the QA prompt rendered with ~1,500
characters of Python documentation as context, as `chain.rag_qa` sends), the
chain's decoding settings (greedy, repetition penalty 1.05, 120 new tokens).

- one-at-a-time: what the local backend did before batching: each call runs
  its own `model.generate` behind a lock;
- batched: `llmops.llm` local backend (`LocalLLM.generate`), whose worker
  gathers concurrent calls into batches.

Arms interleave; each reports answers/s (best round) and the batched arm its
batch sizes. The answers must be the same text, prompt by prompt (greedy).
Goal: batched / one-at-a-time >= 3 at 8 callers.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

QUESTIONS = [
    ("with", "How does the with statement work?"),
    ("pass", "What does the pass statement do?"),
    ("function", "How do I define a function with default arguments?"),
    ("for", "How does a for loop work over a sequence?"),
    ("try", "How do I catch an exception and run cleanup code?"),
    ("lambda", "What is a lambda expression?"),
    ("yield", "What does yield do in a function?"),
    ("import", "How does the import statement find a module?"),
    ("if", "How do if, elif and else choose a branch?"),
    ("while", "When does a while loop stop?"),
    ("global", "What does the global statement do?"),
    ("assert", "What happens when an assert statement fails?"),
    ("del", "What does del do to a name?"),
    ("return", "What does return do in a function without a value?"),
    ("class", "How do I define a class with a method?"),
    ("raise", "How do I raise an exception with a message?"),
]


def prompts(n: int) -> list[list[dict[str, str]]]:
    """The QA prompt of the reference project, rendered with documentation as context."""
    from pydoc_data.topics import topics

    from llmops.prompts.api import Prompt
    from llmops.prompts.spec import spec_from_text

    qa = Prompt(spec_from_text((REPO / "prompts" / "qa.yaml").read_text(), "qa.yaml"), 1)
    out = []
    for topic, question in (QUESTIONS * (n // len(QUESTIONS) + 1))[:n]:
        context = f"[{topic}]\n" + topics.get(topic, topics["with"])[:1500]
        out.append(qa.render(context=context, question=question))
    return out


def run_arm(call: Callable[[list[dict[str, str]]], str], items: list[list[dict[str, str]]],
            callers: int) -> tuple[float, list[str]]:
    """(answers per second, answers in prompt order) with `callers` threads."""
    answers: list[str] = [""] * len(items)
    todo = list(range(len(items)))
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                if not todo:
                    return
                i = todo.pop(0)
            answers[i] = call(items[i])

    started = time.perf_counter()
    with ThreadPoolExecutor(callers) as pool:
        for f in [pool.submit(worker) for _ in range(callers)]:
            f.result()
    return len(items) / (time.perf_counter() - started), answers


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--callers", type=int, default=8)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=120)
    args = parser.parse_args()

    home = tempfile.mkdtemp(prefix="llmops-bench-")
    os.environ["LLMOPS_HOME"] = home
    os.environ.setdefault("LLMOPS_MODEL_CACHE", str(REPO / ".llmops" / "models"))
    import torch

    from llmops.hub import load_causal_lm
    from llmops.llm import create_llm

    model, tok = load_causal_lm()
    llm = create_llm({"backend": "local", "max_tokens": args.max_tokens,
                      "repetition_penalty": 1.05})
    items = prompts(args.prompts)
    lock = threading.Lock()

    def one_at_a_time(messages: list[dict[str, str]]) -> str:
        with lock:  # the local backend before batching: one generate at a time
            inputs = tok.apply_chat_template(messages, add_generation_prompt=True,
                                             return_tensors="pt", return_dict=True)
            with torch.inference_mode():
                out = model.generate(**inputs, max_new_tokens=args.max_tokens, do_sample=False,
                                     temperature=None, top_p=None, top_k=None,
                                     repetition_penalty=1.05, pad_token_id=tok.pad_token_id)
            n = inputs["input_ids"].shape[1]
            return str(tok.decode(out[0, n:], skip_special_tokens=True)).strip()

    def batched(messages: list[dict[str, str]]) -> str:
        return llm.generate(messages).text

    batched(items[0])  # warm-up: the batcher's thread, the kernels
    best = {"one-at-a-time": 0.0, "batched": 0.0}
    answers: dict[str, list[str]] = {}
    batcher = llm.batcher()  # type: ignore[attr-defined]
    sizes: list[int] = []
    for r in range(args.rounds):
        for name, call in (("one-at-a-time", one_at_a_time), ("batched", batched)):
            before = len(batcher.sizes)
            rate, got = run_arm(call, items, args.callers)
            if name == "batched":
                sizes += batcher.sizes[before:]
            best[name] = max(best[name], rate)
            answers.setdefault(name, got)
            print(f"round {r + 1}: {name:14} {rate:6.3f} answers/s", flush=True)
    same = sum(a == b for a, b in zip(answers["one-at-a-time"], answers["batched"], strict=True))
    ratio = best["batched"] / best["one-at-a-time"]
    print(f"\n{args.callers} callers, {len(items)} prompts, {args.max_tokens} new tokens at most")
    print(f"one-at-a-time: {best['one-at-a-time']:.3f} answers/s (best of {args.rounds})")
    print(f"batched:       {best['batched']:.3f} answers/s (best of {args.rounds})")
    print(f"batch sizes:   {dict(sorted(Counter(sizes).items()))} (size: batches)")
    print(f"same answers:  {same}/{len(items)}")
    print(f"ratio batched / one-at-a-time: {ratio:.2f} (goal >= 3)")
    return 0 if same == len(items) and ratio >= 3 else 1


if __name__ == "__main__":
    sys.exit(main())
