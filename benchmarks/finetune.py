"""LoRA fine-tuning throughput: `llmops finetune run` against a plain transformers Trainer + peft.

    .venv/bin/python benchmarks/finetune.py               # about 5 minutes on 2 CPU cores
    .venv/bin/python benchmarks/finetune.py --steps 40    # on a GPU: longer, MFU printed

Same machine, base model, data (the reference house-style conversations,
repeated to `--conversations`), LoRA settings, batch size and number of steps,
in one run, arms interleaved:

- llmops: `llmops.finetune.run` on a recipe written for the benchmark (packing:
  a micro-batch's conversations in one row, no padding; bf16 and SDPA on a GPU);
- baseline: `transformers.Trainer` over the same tokenized examples, padded to
  the longest of each batch (no packing), the same peft LoRA model.

Tokens/s counts the conversations' real tokens (padding excluded) over the
training time. Goal: llmops / baseline >= 1.0 on the CPU, >= 1.5 on a GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def make_project(root: Path, conversations: int, steps: int, batch: int) -> Path:
    source = (REPO / "finetune" / "data" / "house_style.jsonl").read_text().splitlines()
    lines = [line for line in source if line.strip()]
    (root / "finetune" / "data").mkdir(parents=True)
    (root / "finetune" / "data" / "bench.jsonl").write_text(
        "\n".join((lines * (conversations // len(lines) + 1))[:conversations]) + "\n")
    recipe = root / "finetune" / "bench.yaml"
    recipe.write_text(
        "name: bench\ndescription: throughput benchmark\n"
        "data:\n  - jsonl: finetune/data/bench.jsonl\n"
        "lora: {r: 8, alpha: 16, target_modules: [q_proj, k_proj, v_proj, o_proj]}\n"
        f"train: {{steps: {steps}, batch_size: {batch}, max_seq_len: 384, eval_split: 0,\n"
        f"        save_steps: {steps * 10}, packing: true}}\n")
    return recipe


def baseline(recipe_path: Path) -> float:
    """Plain Trainer + peft, padded batches: real tokens per second."""
    import torch
    from transformers import AutoTokenizer, Trainer, TrainingArguments

    from llmops.config import get_settings
    from llmops.finetune import data as D
    from llmops.finetune.recipe import load_recipe
    from llmops.finetune.train import load_for_training
    from llmops.hub import resolve_base_model

    recipe = load_recipe(recipe_path)
    base = resolve_base_model(recipe.base)
    tok = AutoTokenizer.from_pretrained(base)
    convs = D.load_conversations(recipe, get_settings().project_dir)
    examples = [e for c in convs if (e := D.tokenize(tok, c, recipe.train.max_seq_len))]
    model = load_for_training(base, recipe.lora)
    real = {"tokens": 0}

    def collate(batch: list[D.Example]) -> dict[str, torch.Tensor]:
        real["tokens"] += sum(len(e.input_ids) for e in batch)
        return D.pad(batch, tok.pad_token_id)

    t = recipe.train
    out_dir = tempfile.mkdtemp(prefix="bench-baseline-")
    args = TrainingArguments(
        output_dir=out_dir, max_steps=t.steps or -1, learning_rate=t.learning_rate,
        lr_scheduler_type=t.scheduler, per_device_train_batch_size=t.batch_size,
        seed=t.seed, save_strategy="no", logging_steps=10, report_to="none",
        remove_unused_columns=False, disable_tqdm=True, use_cpu=not torch.cuda.is_available(),
        bf16=torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    trainer = Trainer(model=model, args=args, train_dataset=examples, data_collator=collate)
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    shutil.rmtree(out_dir, ignore_errors=True)
    return real["tokens"] / seconds


def ours(recipe_path: Path) -> tuple[float, dict[str, float]]:
    from llmops.finetune import run

    result = run(recipe_path, progress=False, register=False, force=True)
    return result.metrics["tokens_per_s"], result.metrics


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--conversations", type=int, default=96)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="llmops-bench-finetune-"))
    os.environ.update(LLMOPS_HOME=str(root / "home"), LLMOPS_PROJECT_DIR=str(root))
    os.environ.setdefault("LLMOPS_MODEL_CACHE", str(REPO / ".llmops" / "models"))
    recipe = make_project(root, args.conversations, args.steps, args.batch)
    best = {"llmops": 0.0, "baseline": 0.0}
    last: dict[str, float] = {}
    for r in range(args.rounds):
        rate, last = ours(recipe)
        best["llmops"] = max(best["llmops"], rate)
        print(f"round {r + 1}: llmops   {rate:8.1f} tokens/s", flush=True)
        rate = baseline(recipe)
        best["baseline"] = max(best["baseline"], rate)
        print(f"round {r + 1}: baseline {rate:8.1f} tokens/s", flush=True)
    import torch

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    ratio = best["llmops"] / best["baseline"]
    goal = 1.5 if torch.cuda.is_available() else 1.0
    print(f"\n{device}: {args.steps} steps of {args.batch} conversations")
    print(f"llmops:   {best['llmops']:.1f} tokens/s (best of {args.rounds})")
    print(f"baseline: {best['baseline']:.1f} tokens/s (best of {args.rounds})")
    if "mfu" in last:
        print(f"MFU: {last['mfu']:.1%}")
    print(f"peak memory: {last['peak_memory_mb']:.0f} MiB")
    print(f"ratio llmops / baseline: {ratio:.2f} (goal >= {goal})")
    print(json.dumps({"llmops": best["llmops"], "baseline": best["baseline"], "ratio": ratio}))
    shutil.rmtree(root, ignore_errors=True)
    return 0 if ratio >= goal else 1


if __name__ == "__main__":
    sys.exit(main())
