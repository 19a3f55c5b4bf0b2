"""LoRA fine-tuning: recipes (`finetune/*.yaml`), data (JSONL and reviewed feedback),
training on transformers' Trainer with peft, adapters registered as `adapter.<name>`.

    >>> from llmops.finetune import run
    >>> result = run("finetune/house_style.yaml")
    >>> result.version, result.metrics["eval_loss_after"]
"""

from llmops.finetune.recipe import Recipe, check_recipe, load_recipe
from llmops.finetune.train import FinetuneResult, run

__all__ = ["FinetuneResult", "Recipe", "check_recipe", "load_recipe", "run"]
