"""Golden datasets: JSONL files of questions, reference answers and reference topics.

One item a line:
    {"id": "with-1", "question": "...", "reference": "...", "topics": ["with"]}

`topics` names the documents that hold the answer: a document id of the index
(`python-docs:with`) or its local part (`with`). A dataset's version is the hash
of its items, so an edited file is a new version and an unchanged one is not.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from llmops import jsonl
from llmops.errors import EvalError
from llmops.validation import describe_validation_error


class EvalItem(BaseModel):
    """One evaluation case."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, max_length=128)
    question: str = Field(min_length=1)
    reference: str | None = Field(None, description="a correct answer, in our own words")
    topics: tuple[str, ...] = Field((), description="documents that hold the answer")
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("question", "reference")
    @classmethod
    def _not_blank(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("must not be blank")
        return v

    def content_hash(self) -> str:
        """What the scores of this item depend on (not its id or metadata)."""
        body = json.dumps([self.question, self.reference, sorted(self.topics)])
        return hashlib.sha256(body.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Dataset:
    name: str
    path: Path | None
    items: tuple[EvalItem, ...]

    @property
    def version(self) -> str:
        """Hash of the items' ids and contents, in file order."""
        h = hashlib.sha256()
        for item in self.items:
            h.update(f"{item.id}\0{item.content_hash()}\n".encode())
        return h.hexdigest()[:12]

    def __len__(self) -> int:
        return len(self.items)

    def to_jsonl(self) -> Iterator[str]:
        for item in self.items:
            yield json.dumps(item.model_dump(mode="json", exclude_defaults=True),
                             ensure_ascii=False)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text("".join(line + "\n" for line in self.to_jsonl()))
        tmp.replace(path)


def dataset_name(path: Path) -> str:
    return path.name.removesuffix(".jsonl").removesuffix(".json")


def load_dataset(path: Path | str) -> Dataset:
    """Read and check a JSONL dataset; every error names the file, the line and the key."""
    path = Path(path)
    if not path.is_file():
        raise EvalError(f"{path}: no such dataset file")
    items: list[EvalItem] = []
    seen: dict[str, int] = {}
    for where, lineno, data in jsonl.objects(path, EvalError):
        try:
            item = EvalItem.model_validate(data)
        except ValidationError as exc:
            raise EvalError(f"{where}: {describe_validation_error(exc, EvalItem)}") from None
        if item.id in seen:
            raise EvalError(f"{where}: id {item.id!r} repeats line {seen[item.id]}")
        seen[item.id] = lineno
        items.append(item)
    if not items:
        raise EvalError(f"{path}: the dataset has no items")
    return Dataset(dataset_name(path), path, tuple(items))


def from_feedback(rows: Iterable[dict[str, Any]], *, name: str = "feedback") -> Dataset:
    """Evaluation cases from reviewed answers (rows of `Store.export_feedback`).

    A thumbs-up answer becomes the reference of its question, and its sources
    the reference topics. A thumbs-down answer becomes a case whose reference
    is the reviewer's comment (reviewers write the right answer there); one
    without a comment is kept with no reference, so that reference-free
    metrics still score it. Several votes on one question keep the latest.
    """
    by_question: dict[str, EvalItem] = {}
    for row in rows:
        question = _last_user_message(row.get("messages"))
        if question is None:
            continue
        up = row.get("rating") == "up"
        reference = row.get("answer") if up else (row.get("comment") or None)
        topics = tuple(sorted({s["doc_id"] for s in row.get("sources") or []
                               if isinstance(s, dict) and s.get("doc_id")})) if up else ()
        item_id = "fb-" + hashlib.sha256(question.encode()).hexdigest()[:10]
        by_question[question] = EvalItem(
            id=item_id, question=question, reference=reference or None, topics=topics,
            metadata={"request_id": row.get("request_id"), "rating": row.get("rating"),
                      "reviewer": row.get("reviewer"), "rejected_answer":
                      None if up else row.get("answer"), "endpoint": row.get("endpoint"),
                      "chain": row.get("chain"), "chain_version": row.get("chain_version")},
        )
    return Dataset(name, None, tuple(by_question.values()))


def _last_user_message(messages: Any) -> str | None:
    for m in reversed(messages or []):
        if isinstance(m, dict) and m.get("role") == "user" and str(m.get("content", "")).strip():
            return str(m["content"])
    return None
