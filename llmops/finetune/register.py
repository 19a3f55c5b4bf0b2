"""An adapter in the registry: `adapter.<name>`, a pyfunc model (base + adapter) with lineage.

The version holds the peft adapter (`artifacts/adapter`, what `PeftModel.from_pretrained`
reads, and what chains with `llm.adapter` load), the resolved recipe, and with
`--merge` the merged weights (`artifacts/merged`). Its tags: base reference, data
version, recipe hash, training run, the evaluation losses; plus the git commit the
registry adds. The same adapter weights, recipe and data register once.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import yaml

from llmops.finetune.recipe import Recipe
from llmops.registry import Registry, RunLog, VersionInfo


def register_adapter(reg: Registry, run: RunLog, recipe: Recipe, prep: Any, adapter_dir: Path,
                     merged_dir: Path | None, metrics: dict[str, float]) -> tuple[VersionInfo, bool]:
    digest = hashlib.sha256()
    for f in sorted(adapter_dir.rglob("*")):
        if f.is_file():
            digest.update(f.name.encode() + b"\0" + f.read_bytes())
    digest.update(f"{recipe.content_hash()}\0{prep.version}".encode())
    content_hash = digest.hexdigest()
    tags = {
        "llmops.kind": "adapter",
        "lineage.base_model": recipe.base,
        "lineage.data_version": prep.version,
        "lineage.recipe": recipe.name,
        "lineage.recipe_hash": recipe.content_hash(),
        "lineage.training_run": run.run_id,
        "lineage.conversations": prep.conversations,
        **{f"finetune.{k}": f"{v:.4f}" for k, v in metrics.items()},
        **{f"adapter.tag.{k}": v for k, v in recipe.tags.items()},
    }
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "model"
        save_pyfunc(recipe, adapter_dir, merged_dir, Path(tmp), model_dir)
        return reg.register(recipe.registered_name, model_dir, content_hash=content_hash,
                            run=run, description=recipe.description, tags=tags)


def save_pyfunc(recipe: Recipe, adapter_dir: Path, merged_dir: Path | None, tmp: Path,
                model_dir: Path) -> None:
    import mlflow.pyfunc
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Array, ColSpec, Object, Property, Schema

    import llmops
    from llmops.finetune import pyfunc

    # Artifacts land under artifacts/<folder name>: name the copies so.
    adapter = tmp / "adapter"
    shutil.copytree(adapter_dir, adapter)
    recipe_file = tmp / "recipe.yaml"
    recipe_file.write_text(yaml.safe_dump(recipe.resolved(), sort_keys=False))
    artifacts = {"adapter": str(adapter), "recipe": str(recipe_file)}
    if merged_dir is not None:
        merged = tmp / "merged"
        shutil.copytree(merged_dir, merged)
        artifacts["merged"] = str(merged)
    message = Object([Property("role", "string"), Property("content", "string")])
    inputs = Schema([ColSpec(Array(message), "messages", required=False),
                     ColSpec("string", "question", required=False)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        mlflow.pyfunc.save_model(
            path=str(model_dir), python_model=pyfunc.__file__,
            model_config={"base_model": recipe.base, "max_tokens": 256},
            artifacts=artifacts,
            signature=ModelSignature(inputs=inputs, outputs=Schema([ColSpec("string", "answer")])),
            pip_requirements=[f"llmops=={llmops.__version__}", "mlflow", "peft"],
        )
