"""Fine-tuning fixtures: the real SmolLM2 tokenizer, a tiny Llama built in code on its
vocabulary, a real request log, and a project folder for recipes that a test writes."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llmops.config import reset_settings
from llmops.store import RequestRow, Store

GOOD_JSONL = [
    [("user", "What does len() return?"),
     ("assistant", "The number of items in a container.\nTip: It works on str, list and dict.")],
    [("system", "You answer Python questions."), ("user", "What is None?"),
     ("assistant", "The object that stands for no value.\nTip: Compare with `is None`.")],
    [("user", "What does break do?"),
     ("assistant", "It leaves the innermost loop at once.\nTip: `for ... else` runs when no "
      "break happened.")],
]


def messages(turns: list[tuple[str, str]]) -> dict[str, Any]:
    return {"messages": [{"role": r, "content": c} for r, c in turns]}


def write_jsonl(path: Path, conversations: list[Any]) -> Path:
    """One line per item: a list of (role, content) turns, or a raw line (str) as is."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((c if isinstance(c, str) else json.dumps(messages(c))) + "\n"
                            for c in conversations))
    return path


@functools.cache
def _tokenizer(folder: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)


@pytest.fixture
def tokenizer(home: Path) -> Any:
    """The base model's real tokenizer, loaded once per session (tests only read it)."""
    from llmops.hub import resolve_base_model

    return _tokenizer(resolve_base_model())


@pytest.fixture
def tiny_model(tokenizer: Any) -> Any:
    """A seeded 2-layer Llama with the tokenizer's vocabulary, SDPA attention, no cache
    (as in training), in eval mode (no dropout)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, use_cache=False,
                         attn_implementation="sdpa")
    torch.manual_seed(0)
    return LlamaForCausalLM(config).eval()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A fresh request and feedback log on a SQLite file."""
    s = Store.open(f"sqlite:///{tmp_path / 'requests.db'}")
    yield s
    s.close()


def served(rid: str, question: str, answer: str, **kw: Any) -> RequestRow:
    """A request the gateway answered on endpoint rag-qa, variant production (by default)."""
    base: dict[str, Any] = dict(
        id=rid, endpoint="rag-qa", variant="production", status=200, chain="chain.rag_qa",
        chain_version=1, messages=[{"role": "user", "content": question}], answer=answer)
    return RequestRow(**(base | kw))


def vote(store: Store, rid: str, rating: str, comment: str | None = None, *,
         reviewer: str = "rita", at: float | None = None) -> None:
    """A reviewer's vote; `at` (unix seconds) sets when it was cast."""
    if at is None:
        store.add_feedback(rid, reviewer=reviewer, rating=rating, comment=comment)
    else:
        store.submit(store.feedback_op(rid, reviewer=reviewer, rating=rating, comment=comment,
                                       now=at)).result()


@pytest.fixture
def recipe_project(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder (the settings' project_dir) with finetune/data/good.jsonl."""
    root = tmp_path / "project"
    write_jsonl(root / "finetune" / "data" / "good.jsonl", GOOD_JSONL)
    monkeypatch.setenv("LLMOPS_PROJECT_DIR", str(root))
    reset_settings()
    return root
