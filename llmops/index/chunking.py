"""Documents to chunks: split, hash, and give each chunk a stable id.

What is embedded is the document's title, a blank line, then the chunk's text:
the title puts a chunk in context ("The "with" statement" ranks that topic's
chunks above the same words in a general one). A chunk's id is
`<doc id>#<first 16 hex of sha256(title + text)>` (`~n` appended for the n-th
repeat of the same text in one document), so an unchanged chunk keeps its id
wherever it moves in its document, and a changed one gets a new id: the new
chunk can be written before the old one is deleted. The record hash covers the
text and all the metadata: a chunk whose embedded text is unchanged but whose
other metadata changed (a path, a URL) is rewritten without being re-embedded.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from llmops.errors import SourceError
from llmops.index.sources import Document, Scalar

if TYPE_CHECKING:
    from langchain_text_splitters import RecursiveCharacterTextSplitter

HASH_KEY = "record_hash"  # chunk metadata key holding the record hash


@dataclass(frozen=True)
class Chunk:
    """One unit of retrieval: a piece of a document, its metadata and hashes."""

    id: str
    doc_id: str
    text: str  # what is stored and returned
    metadata: dict[str, Scalar]  # the document's metadata plus HASH_KEY
    record_hash: str
    embed_text: str  # what is embedded: title and text


def record_hash(text: str, metadata: dict[str, Scalar]) -> str:
    """The hash of everything a chunk's record holds but its embedding."""
    meta = {k: v for k, v in metadata.items() if k != HASH_KEY}
    payload = json.dumps([text, meta], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


def make_splitter(chunk_size: int, chunk_overlap: int) -> RecursiveCharacterTextSplitter:
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    return RecursiveCharacterTextSplitter(chunk_size=chunk_size, chunk_overlap=chunk_overlap)


def chunk_documents(docs: Iterable[Document], chunk_size: int, chunk_overlap: int) -> dict[str, Chunk]:
    """All chunks of `docs`, by id, in document order. Blank documents give none."""
    splitter = make_splitter(chunk_size, chunk_overlap)
    chunks: dict[str, Chunk] = {}
    seen_docs: set[str] = set()
    for doc in docs:
        if doc.id in seen_docs:
            raise SourceError(f"document id {doc.id!r} appears twice; ids must be unique")
        seen_docs.add(doc.id)
        repeats: dict[str, int] = {}
        title = str(doc.metadata.get("title") or "")
        for text in splitter.split_text(doc.text):
            embed_text = f"{title}\n\n{text}" if title else text
            digest = hashlib.sha256(embed_text.encode()).hexdigest()[:16]
            n = repeats.get(digest, 0)
            repeats[digest] = n + 1
            chunk_id = f"{doc.id}#{digest}" + (f"~{n}" if n else "")
            rhash = record_hash(text, doc.metadata)
            metadata = {**doc.metadata, HASH_KEY: rhash}
            chunks[chunk_id] = Chunk(chunk_id, doc.id, text, metadata, rhash, embed_text)
    return chunks
