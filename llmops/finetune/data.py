"""Training data: chat conversations from JSONL files and from reviewed answers, tokenized
with the base model's chat template, the loss on the assistant's tokens only.

A conversation is `{"messages": [{"role", "content"}, ...]}` ending with the
assistant. The training set's version is the hash of its conversations in
order. Packing (`pack`) lays a micro-batch's conversations end to end in one
row with positions restarting at each: transformers then masks attention
block by block, so no conversation attends to another, and no token is padding.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmops import jsonl
from llmops.errors import RecipeError

if TYPE_CHECKING:
    from llmops.finetune.recipe import FeedbackFilter, Recipe
    from llmops.store import Store

IGNORE = -100  # the label of a token the loss skips
ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class Conversation:
    messages: tuple[tuple[str, str], ...]  # (role, content), ending with the assistant
    source: str  # where it came from: file:line, or feedback:<request id>

    def as_messages(self) -> list[dict[str, str]]:
        return [{"role": r, "content": c} for r, c in self.messages]


@dataclass(frozen=True)
class Example:
    """A tokenized conversation: ids, and labels (IGNORE outside the assistant's turns)."""

    input_ids: list[int]
    labels: list[int]
    source: str

    @property
    def trained_tokens(self) -> int:
        return sum(label != IGNORE for label in self.labels)


# -- sources ------------------------------------------------------------------------------
def read_jsonl(path: Path) -> list[Conversation]:
    """Conversations of a JSONL file; an error names the file, the line and what is wrong."""
    out = [Conversation(_checked(data.get("messages"), where), where)
           for where, _, data in jsonl.objects(path, RecipeError,
                                               what="an object with messages")]
    if not out:
        raise RecipeError(f"{path}: no conversations")
    return out


def _checked(messages: Any, where: str) -> tuple[tuple[str, str], ...]:
    """(role, content) pairs: an optional system message first, then the user's turn first
    and the assistant's last (the template renders each prefix for its tokens)."""
    if not isinstance(messages, list) or not messages:
        raise RecipeError(f"{where}: messages: expected a non-empty list")
    turns = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(
                m.get("content"), str) or not m["content"].strip():
            raise RecipeError(f"{where}: messages[{i}]: needs role system|user|assistant and "
                              "non-empty text content")
        if m["role"] == "system" and i > 0:
            raise RecipeError(f"{where}: messages[{i}]: a system message can only come first")
        turns.append((m["role"], m["content"]))
    first = 1 if turns[0][0] == "system" else 0
    if first >= len(turns) or turns[first][0] != "user":
        raise RecipeError(f"{where}: messages[{first}]: the first turn must be the user's")
    if turns[-1][0] != "assistant":
        raise RecipeError(f"{where}: messages[{len(turns) - 1}]: the last message must be the "
                          "assistant's")
    return tuple(turns)


def from_feedback(rows: Iterable[dict[str, Any]]) -> list[Conversation]:
    """Reviewed answers (rows of `Store.export_feedback`) as conversations.

    Rated up: the served answer is the target. Rated down with a comment: the
    comment (the reviewer's corrected answer) is. Rated down without one: left
    out. Only the user's and the assistant's turns are kept (client system
    messages never reached the model). Several votes on one request keep the latest.
    """
    latest: dict[str, dict[str, Any]] = {}
    for row in rows:  # `export_feedback` yields the oldest vote first
        rid = str(row["request_id"])
        latest.pop(rid, None)  # keep requests in the order of their latest vote
        latest[rid] = row
    out = []
    for rid, row in latest.items():
        up = row.get("rating") == "up"
        target = row.get("answer") if up else row.get("comment")
        if not isinstance(target, str) or not target.strip():
            continue
        turns = [(m["role"], _text(m.get("content"))) for m in row.get("messages") or []
                 if isinstance(m, dict) and m.get("role") in ("user", "assistant")]
        turns = [t for t in turns if t[1].strip()]
        while turns and turns[0][0] != "user":  # the model's turns start with the user's
            turns.pop(0)
        if not turns or turns[-1][0] != "user":
            continue
        out.append(Conversation((*turns, ("assistant", target.strip())), f"feedback:{rid}"))
    return out


def _text(content: Any) -> str:
    """A message's text: a string, or the text parts of OpenAI's list-of-parts form."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text") or "" for p in content
                       if isinstance(p, dict) and p.get("type") == "text")
    return ""


def load_conversations(recipe: Recipe, project: Path,
                       store: Store | None = None) -> list[Conversation]:
    """Every conversation of a recipe's sources, in the order the recipe lists them.

    Feedback comes from `store`, else from the settings' request log (opened and closed here).
    """
    out: list[Conversation] = []
    for src in recipe.data:
        if src.jsonl is not None:
            out += read_jsonl(project / src.jsonl)
        elif (f := src.feedback) is not None:
            if store is not None:
                out += from_feedback(_export(store, f))
                continue
            from llmops.store import Store

            own = Store.open()
            try:
                out += from_feedback(_export(own, f))
            finally:
                own.close()
    return out


def _export(store: Store, f: FeedbackFilter) -> list[dict[str, Any]]:
    return list(store.export_feedback(endpoint=f.endpoint, variant=f.variant,
                                      since=_day(f.since), until=_day(f.until)))


def _day(d: date | None) -> float | None:
    if d is None:
        return None
    return datetime.combine(d, time.min, tzinfo=timezone.utc).timestamp()


def data_version(conversations: Sequence[Conversation]) -> str:
    """The training set's version: a hash of its conversations, in order."""
    h = hashlib.sha256()
    for c in conversations:
        h.update(json.dumps(c.messages, ensure_ascii=False).encode() + b"\n")
    return h.hexdigest()[:16]


# -- tokens ---------------------------------------------------------------------------------
def tokenize(tokenizer: Any, conv: Conversation, max_len: int) -> Example | None:
    """The conversation through the chat template; labels only on the assistant's tokens
    (their text and the end-of-turn token that closes them). None if nothing is left to
    learn within `max_len` tokens."""
    messages = conv.as_messages()
    ids = _template(tokenizer, messages, generation_prompt=False)
    labels = [IGNORE] * len(ids)
    end_of_turn = tokenizer.eos_token_id
    for i, (role, _) in enumerate(conv.messages):
        if role != "assistant":
            continue
        prompt = _template(tokenizer, messages[:i], generation_prompt=True)
        turn = _template(tokenizer, messages[:i + 1], generation_prompt=False)
        start, end = len(prompt), len(turn)
        if ids[:start] != prompt or ids[:end] != turn or start >= end:
            raise RecipeError(f"{conv.source}: messages[{i}]: the chat template does not render "
                              "conversations as prefixes of each other; cannot find the "
                              "assistant's tokens")
        span = ids[start:end]
        if end_of_turn in span:  # what follows the end-of-turn token is layout, not answer
            end = start + span.index(end_of_turn) + 1
        labels[start:end] = ids[start:end]
    ids, labels = ids[:max_len], labels[:max_len]
    if all(label == IGNORE for label in labels):
        return None
    return Example(ids, labels, conv.source)


def _template(tokenizer: Any, messages: list[dict[str, str]], *,
              generation_prompt: bool) -> list[int]:
    ids: Any = tokenizer.apply_chat_template(messages, tokenize=True,
                                             add_generation_prompt=generation_prompt,
                                             return_dict=False)
    if hasattr(ids, "get") and "input_ids" in ids:
        ids = ids["input_ids"]
    return [int(t) for t in ids]


def split(examples: list[Example], share: float, seed: int) -> tuple[list[Example], list[Example]]:
    """(train, evaluation): a seeded shuffle, `share` held out (at least one if share > 0)."""
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n = len(examples)
    n_eval = 0 if share <= 0 or n < 2 else min(n - 1, max(1, round(n * share)))  # keep one
    held = set(order[:n_eval])
    return ([e for i, e in enumerate(examples) if i not in held],
            [e for i, e in enumerate(examples) if i in held])


# -- batches --------------------------------------------------------------------------------
def pack(batch: Sequence[Example]) -> dict[str, Any]:
    """One row: the conversations end to end, positions restarting at each, no padding.

    With no attention mask and no cache (`use_cache=False`, as in training), transformers
    reads the restarts in `position_ids` and masks attention to each conversation's own
    block (`masking_utils.find_packed_sequence_indices`). A conversation's first token gets
    no label: it would be predicted from the end of the one before.
    """
    import torch

    ids: list[int] = []
    labels: list[int] = []
    positions: list[int] = []
    for ex in batch:
        ids += ex.input_ids
        labels += [IGNORE, *ex.labels[1:]]  # never learn a conversation's first token
        positions += range(len(ex.input_ids))
    return {"input_ids": torch.tensor([ids]), "labels": torch.tensor([labels]),
            "position_ids": torch.tensor([positions])}


def pad(batch: Sequence[Example], pad_id: int) -> dict[str, Any]:
    """Rows padded on the right to the longest, with an attention mask (packing off)."""
    import torch

    width = max(len(ex.input_ids) for ex in batch)
    ids = [ex.input_ids + [pad_id] * (width - len(ex.input_ids)) for ex in batch]
    labels = [ex.labels + [IGNORE] * (width - len(ex.labels)) for ex in batch]
    mask = [[1] * len(ex.input_ids) + [0] * (width - len(ex.input_ids)) for ex in batch]
    return {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels),
            "attention_mask": torch.tensor(mask)}
