"""`llmops finetune run`: LoRA on a hub base model with transformers' Trainer and peft.

One MLflow run per recipe run (experiment `<prefix>/finetune`): the resolved
recipe and data version as parameters, the loss curve and learning rate per
step, evaluation loss and perplexity before and after, tokens/s, peak memory
and, on a GPU, model FLOPs utilisation. Checkpoints go to
`HOME/finetune/<name>/<recipe hash>-<data version>/checkpoints` every
`save_steps`; `resume=True` (`--resume`) goes on from the last one, in the same
MLflow run. The adapter is then registered as `adapter.<name>` (`register.py`).

Device: a CUDA GPU when there is one (bfloat16 where it has it, SDPA attention),
else the CPU in float32. The code path is the same; several GPUs run it under
`accelerate launch` or `torchrun` (the Trainer distributes itself).
"""

from __future__ import annotations

import json
import math
import resource
import shutil
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from llmops.config import get_settings
from llmops.errors import SpecError
from llmops.finetune import data as D
from llmops.finetune.recipe import Recipe, check_recipe, load_recipe

# peft still asks transformers for `is_gradient_checkpointing`, which warns at every call.
warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)

AREA = "finetune"
# Dense bfloat16 peak of common GPUs, FLOP/s, for the utilisation figure
# (LLMOPS_GPU_PEAK_TFLOPS overrides it for others).
GPU_PEAK = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12,
            "A10": 125e12, "4090": 165e12}


@dataclass
class Prepared:
    """The data of a run: examples to train on and to evaluate, and their provenance."""

    recipe: Recipe
    conversations: int
    version: str
    train: list[D.Example]
    eval: list[D.Example]
    dropped: int  # conversations with nothing to learn within max_seq_len


@dataclass
class FinetuneResult:
    name: str
    version: int | None  # the registered adapter version (None: not registered)
    created: bool
    run_id: str
    data_version: str
    recipe_hash: str
    steps: int
    resumed_from: int | None  # the checkpoint's step, when resumed
    metrics: dict[str, float] = field(default_factory=dict)
    adapter_dir: str = ""
    merged_dir: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def prepare(recipe: Recipe, tokenizer: Any, store: Any = None) -> Prepared:
    """Conversations of every source, tokenized and split."""
    project = get_settings().project_dir
    convs = D.load_conversations(recipe, project, store)
    if not convs:
        raise SpecError(f"recipe {recipe.name}: its sources hold no conversations")
    examples = [D.tokenize(tokenizer, c, recipe.train.max_seq_len) for c in convs]
    kept = [e for e in examples if e is not None]
    if not kept:
        raise SpecError(f"recipe {recipe.name}: no conversation has assistant tokens within "
                        f"train.max_seq_len ({recipe.train.max_seq_len})")
    train, held = D.split(kept, recipe.train.eval_split, recipe.train.seed)
    return Prepared(recipe, len(convs), D.data_version(convs), train, held,
                    len(examples) - len(kept))


def workdir(recipe: Recipe, version: str) -> Path:
    return get_settings().home_dir / "finetune" / recipe.name / (
        f"{recipe.content_hash()[:12]}-{version}")


def run(recipe_path: Path | str, *, resume: bool = False, merge: bool = False,
        progress: bool = True, register: bool = True, force: bool = False,
        store: Any = None) -> FinetuneResult:
    """Train the recipe's adapter, log the run, register the adapter.

    An adapter already registered from the same recipe and data version is returned
    as it is, untrained again, unless `force`.

    Example:
        >>> run("finetune/house_style.yaml").metrics["eval_loss_after"]
    """
    from llmops.registry import get_registry

    recipe, base_dir, tokenizer, prep = _start(recipe_path, store)
    reg = get_registry()
    if register and not (resume or force or merge):
        done = _registered(reg, recipe, prep.version)
        if done is not None:
            return done
    work = workdir(recipe, prep.version)
    checkpoints, state_file = work / "checkpoints", work / "run.json"
    last = _last_checkpoint(checkpoints)
    if resume and (last is None or not state_file.is_file()):
        raise SpecError(f"{recipe_path}: nothing to resume: no checkpoint in {checkpoints}")
    if not resume and work.exists():
        shutil.rmtree(work)  # a new run starts clean
    work.mkdir(parents=True, exist_ok=True)
    run_id = json.loads(state_file.read_text())["run_id"] if resume else None
    with reg.run(AREA, f"finetune {recipe.name}", resume=run_id, tags={
            "llmops.kind": "finetune", "llmops.finetune.recipe": recipe.name}) as mlrun:
        if not resume:
            state_file.write_text(json.dumps({"run_id": mlrun.run_id}))
            mlrun.log_batch(params={
                "recipe": recipe.name, "base_model": recipe.base, "data_version": prep.version,
                "recipe_hash": recipe.content_hash(), "conversations": str(prep.conversations),
                "train_examples": str(len(prep.train)), "eval_examples": str(len(prep.eval)),
                "dropped_examples": str(prep.dropped),
                **{f"lora.{k}": v for k, v in recipe.lora.model_dump().items()},
                **{f"train.{k}": v for k, v in recipe.train.model_dump().items()}})
            mlrun.log_dict(recipe.resolved(), "recipe.json")
        trained = _train(prep, base_dir, tokenizer, checkpoints, last if resume else None,
                         progress, mlrun)
        adapter_dir = work / "adapter"
        trained.model.save_pretrained(adapter_dir)
        merged_dir = None
        if merge:
            merged_dir = work / "merged"
            trained.model.merge_and_unload().save_pretrained(merged_dir)
            tokenizer.save_pretrained(merged_dir)
        mlrun.log_batch(metrics=trained.metrics)
        result = FinetuneResult(recipe.name, None, False, mlrun.run_id, prep.version,
                                recipe.content_hash(), trained.steps,
                                trained.resumed_from, trained.metrics, str(adapter_dir),
                                str(merged_dir) if merged_dir else None)
        if register:
            from llmops.finetune.register import register_adapter

            info, created = register_adapter(reg, mlrun, recipe, prep, adapter_dir, merged_dir,
                                             trained.metrics)
            result.version, result.created = info.version, created
    return result


def _start(recipe_path: Path | str, store: Any) -> tuple[Recipe, Path, Any, Prepared]:
    """The recipe checked, its base model's folder and tokenizer, its data prepared."""
    from transformers import AutoTokenizer

    from llmops.hub import resolve_base_model

    recipe = load_recipe(recipe_path)
    check_recipe(recipe, recipe_path)
    base_dir = resolve_base_model(recipe.base)
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    return recipe, base_dir, tokenizer, prepare(recipe, tokenizer, store)


def plan(recipe_path: Path | str, *, force: bool = False,
         store: Any = None) -> tuple[Prepared, FinetuneResult | None]:
    """What `run` would do, with nothing trained, logged or registered: the recipe checked,
    its data prepared and versioned, and the adapter version already registered from both
    (None: `run` would train and register a new one)."""
    from llmops.registry import get_registry

    recipe, _, _, prep = _start(recipe_path, store)
    return prep, None if force else _registered(get_registry(), recipe, prep.version)


def _registered(reg: Any, recipe: Recipe, version: str) -> FinetuneResult | None:
    """The registered adapter of this recipe and data version, if there is one."""
    if not reg.exists(recipe.registered_name):
        return None
    for v in reversed(reg.list_versions(recipe.registered_name)):
        tags = v.tags
        if (tags.get("lineage.recipe_hash") == recipe.content_hash()
                and tags.get("lineage.data_version") == version and not v.archived):
            metrics = {k.removeprefix("finetune."): float(val) for k, val in tags.items()
                       if k.startswith("finetune.")}
            return FinetuneResult(recipe.name, v.version, False,
                                  str(tags.get("lineage.training_run", "")), version,
                                  recipe.content_hash(), 0, None, metrics)
    return None


@dataclass
class _Trained:
    model: Any
    steps: int
    resumed_from: int | None
    metrics: dict[str, float]


def _device() -> tuple[str, Any]:
    import torch

    if torch.cuda.is_available():
        return "cuda", torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return "cpu", torch.float32


def load_for_training(base_dir: Path, lora: Any, dtype_name: str = "auto") -> Any:
    """A fresh copy of the base (never the shared serving one) with LoRA layers."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    device, dtype = _device()
    if dtype_name != "auto":
        dtype = getattr(torch, dtype_name)
    model: Any = AutoModelForCausalLM.from_pretrained(base_dir, dtype=dtype,
                                                      attn_implementation="sdpa")
    model = model.to(device)
    model.config.use_cache = False  # training: no cache (and packed rows need none)
    config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                        target_modules=list(lora.target_modules), task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def _train(prep: Prepared, base_dir: Path, tokenizer: Any, checkpoints: Path,
           resume_from: Path | None, progress: bool, mlrun: Any) -> _Trained:
    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments

    t = prep.recipe.train
    model = load_for_training(base_dir, prep.recipe.lora, t.dtype)
    device = next(model.parameters()).device
    collate = Collator(t.packing, tokenizer.pad_token_id or tokenizer.eos_token_id)
    metrics: dict[str, float] = {}
    if prep.eval:
        metrics["eval_loss_before"] = evaluate_loss(model, prep.eval, collate, t.batch_size)

    class LogToMlflow(TrainerCallback):  # the loss curve, at every logged step
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None,
                   **kw: Any) -> None:
            values = {k: float(v) for k, v in (logs or {}).items()
                      if isinstance(v, int | float) and not isinstance(v, bool)}
            if values:
                mlrun.log_metrics(values, state.global_step)

    args = TrainingArguments(
        output_dir=str(checkpoints), max_steps=t.steps or -1,
        num_train_epochs=t.epochs or 1.0, learning_rate=t.learning_rate,
        lr_scheduler_type=t.scheduler, warmup_steps=t.warmup_steps,
        per_device_train_batch_size=t.batch_size, gradient_accumulation_steps=t.gradient_accumulation,
        seed=t.seed, data_seed=t.seed, save_strategy="steps", save_steps=t.save_steps,
        save_total_limit=2, logging_steps=1, report_to="none", remove_unused_columns=False,
        disable_tqdm=not progress, dataloader_num_workers=0, use_cpu=device.type == "cpu",
        bf16=device.type == "cuda" and torch.cuda.is_bf16_supported(),
    )
    trainer = Trainer(model=model, args=args, train_dataset=_Examples(prep.train),
                      data_collator=collate, callbacks=[LogToMlflow()])
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    out = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    seconds = time.perf_counter() - started
    metrics["train_loss"] = float(out.training_loss)
    metrics["train_seconds"] = seconds
    metrics["tokens_per_s"] = collate.tokens / seconds if seconds > 0 else 0.0
    metrics["peak_memory_mb"] = _peak_memory_mb()
    mfu = _mfu(model, metrics["tokens_per_s"])
    if mfu is not None:
        metrics["mfu"] = mfu
    if prep.eval:
        metrics["eval_loss_after"] = evaluate_loss(model, prep.eval, collate, t.batch_size)
        for when in ("before", "after"):
            metrics[f"perplexity_{when}"] = math.exp(min(metrics[f"eval_loss_{when}"], 50.0))
    resumed = int(resume_from.name.rsplit("-", 1)[-1]) if resume_from else None
    return _Trained(model, int(trainer.state.global_step), resumed, metrics)


class _Examples:
    """The examples as a map-style dataset the Trainer's loader reads."""

    def __init__(self, examples: list[D.Example]) -> None:
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> D.Example:
        return self.examples[i]


class Collator:
    """Examples -> a batch (packed, or padded); counts the tokens it hands out."""

    def __init__(self, packing: bool, pad_id: int) -> None:
        self.packing, self.pad_id, self.tokens = packing, pad_id, 0

    def __call__(self, batch: list[D.Example]) -> dict[str, Any]:
        self.tokens += sum(len(e.input_ids) for e in batch)
        return D.pack(batch) if self.packing else D.pad(batch, self.pad_id)


def evaluate_loss(model: Any, examples: list[D.Example], collate: Collator,
                  batch_size: int) -> float:
    """Mean loss per trained (assistant) token over `examples`, without training."""
    import torch

    total, count, counted = 0.0, 0, collate.tokens
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad():
        for i in range(0, len(examples), batch_size):
            batch = collate(examples[i:i + batch_size])
            n = int((batch["labels"][:, 1:] != D.IGNORE).sum())  # labels shift by one
            out = model(**{k: v.to(device) for k, v in batch.items()})
            total += float(out.loss) * n
            count += n
    collate.tokens = counted  # evaluation tokens are not training throughput
    model.train(was_training)
    return total / count if count else float("nan")


def _last_checkpoint(folder: Path) -> Path | None:
    found = [p for p in folder.glob("checkpoint-*") if p.name.rsplit("-", 1)[-1].isdigit()
             and (p / "trainer_state.json").is_file()]
    return max(found, key=lambda p: int(p.name.rsplit("-", 1)[-1])) if found else None


def _peak_memory_mb() -> float:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _mfu(model: Any, tokens_per_s: float) -> float | None:
    """Model FLOPs utilisation on a GPU: 4 N FLOPs per token (forward, and the backward
    through frozen weights to the adapters) against the GPU's bfloat16 peak."""
    import os

    import torch

    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    peak = float(os.environ.get("LLMOPS_GPU_PEAK_TFLOPS", 0)) * 1e12 or next(
        (v for k, v in GPU_PEAK.items() if k in name), 0.0)
    if not peak:
        return None
    n = sum(p.numel() for p in model.parameters())
    return 4 * n * tokens_per_s / peak
