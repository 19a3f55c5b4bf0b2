"""Where documents come from: a registry of source kinds, each with one small contract.

A source kind is a `Source` subclass with a `kind`, a `Config` model (the keys
its entry takes in `index.sources` of llmops.yaml) and `documents()`.
Register one with `@register_source`. Built in:

- `python-docs`: the topics of the running interpreter's `pydoc_data.topics`
  (the reference manual behind `help("with")`), read at run time;
- `files`: a glob of Markdown, text and HTML files, relative to the project;
- `jsonl`: one document per line: `{"id": ..., "text": ..., "metadata": {...}}`.

Every document has an id unique across sources (`<source name>:<local id>`),
its text, and flat metadata with at least `title`, `source` and `url` or `path`.
"""

from __future__ import annotations

import glob as globlib
import sys
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from llmops import jsonl
from llmops.errors import SourceError

Scalar = str | int | float | bool
# Metadata keys the index writes itself; a source may not set them.
RESERVED_KEYS = frozenset({"doc_id", "source", "record_hash"})


class SourceConfig(BaseModel):
    """What every source has; each kind subclasses it with its own keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str = Field(description="registered source kind: python-docs, files, jsonl, ...")
    name: str | None = Field(
        None, description="prefix of this source's document ids (default: the kind); unique"
    )

    @property
    def source_name(self) -> str:
        return self.name or self.kind


@dataclass(frozen=True)
class Document:
    """One source document before chunking."""

    id: str
    text: str
    metadata: dict[str, Scalar] = field(default_factory=dict)


class Source(ABC):
    """The contract of a source kind.

    Subclasses set `kind` and `Config` and implement `documents()`; errors
    they raise are `SourceError`s whose message starts with `self.where`.
    """

    kind: ClassVar[str]
    Config: ClassVar[type[SourceConfig]] = SourceConfig

    def __init__(self, config: SourceConfig, project_dir: Path, where: str) -> None:
        self.config = config
        self.project_dir = project_dir
        self.name = config.source_name
        self.where = f"{where} ({self.kind} {self.name!r})"

    @abstractmethod
    def documents(self) -> Iterator[Document]:
        """Yield every document of the source, each with a stable id."""

    def document(self, local_id: str, text: str, metadata: dict[str, Scalar]) -> Document:
        """A document with the source's id prefix and the common metadata."""
        bad = RESERVED_KEYS & metadata.keys()
        if bad:
            raise SourceError(f"{self.where}: {local_id}: metadata key(s) {sorted(bad)} reserved")
        doc_id = f"{self.name}:{local_id}"
        return Document(doc_id, text, {**metadata, "source": self.name, "doc_id": doc_id})


_SOURCES: dict[str, type[Source]] = {}


def register_source(cls: type[Source]) -> type[Source]:
    """Class decorator: make a source kind available to `index.sources`."""
    kind = getattr(cls, "kind", None)
    if not isinstance(kind, str) or not kind:
        raise TypeError(f"{cls.__qualname__}: set the class attribute `kind` to a non-empty str")
    if not (isinstance(cls.Config, type) and issubclass(cls.Config, SourceConfig)):
        raise TypeError(f"{cls.__qualname__}.Config must subclass llmops.index.SourceConfig")
    other = _SOURCES.get(kind)
    if other is not None and other is not cls:
        raise ValueError(
            f"source kind {kind!r} is already registered by {other.__module__}."
            f"{other.__qualname__}; choose another kind"
        )
    _SOURCES[kind] = cls
    return cls


def source_kinds() -> list[str]:
    return sorted(_SOURCES)


def source_class(kind: str, where: str = "index.sources") -> type[Source]:
    """The registered class of `kind`, or a SourceError that lists the known kinds."""
    try:
        return _SOURCES[kind]
    except KeyError:
        raise SourceError(
            f"{where}.kind: unknown source kind {kind!r}; known: {', '.join(source_kinds())}"
        ) from None


def make_source(config: SourceConfig, project_dir: Path, where: str) -> Source:
    return source_class(config.kind, where)(config, project_dir, where)


# -- python-docs ---------------------------------------------------------------


class PythonDocsConfig(SourceConfig):
    kind: str = "python-docs"
    topics: list[str] | None = Field(None, description="only these topics (default: all)")


@register_source
class PythonDocsSource(Source):
    """The reference manual's topics shipped with the interpreter (`help("with")`)."""

    kind = "python-docs"
    Config = PythonDocsConfig

    def documents(self) -> Iterator[Document]:
        try:
            from pydoc_data.topics import topics
        except ImportError:
            raise SourceError(
                f"{self.where}: this interpreter has no pydoc_data.topics to read"
            ) from None
        assert isinstance(self.config, PythonDocsConfig)
        wanted = self.config.topics
        if wanted is not None:
            unknown = sorted(set(wanted) - topics.keys())
            if unknown:
                raise SourceError(f"{self.where}.topics: unknown topic(s) {unknown}")
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        for topic in sorted(wanted if wanted is not None else topics):
            text = topics[topic]
            title = next((ln.strip() for ln in text.splitlines() if ln.strip()), topic)
            yield self.document(
                topic,
                text,
                {
                    "title": title,
                    "topic": topic,
                    "python_version": version,
                    "url": f"https://docs.python.org/{version}/search.html?q={topic}",
                },
            )


# -- files ---------------------------------------------------------------------


class FilesConfig(SourceConfig):
    kind: str = "files"
    glob: str = Field(description="glob of .md/.markdown/.txt/.html/.htm files; ** recurses")
    encoding: str = Field("utf-8", description="text encoding of the files")


FILE_SUFFIXES = (".md", ".markdown", ".txt", ".html", ".htm")


@register_source
class FilesSource(Source):
    """Markdown, text and HTML files matched by a glob (relative to the project folder)."""

    kind = "files"
    Config = FilesConfig

    def documents(self) -> Iterator[Document]:
        assert isinstance(self.config, FilesConfig)
        pattern = self.config.glob
        root = self.project_dir
        full = pattern if Path(pattern).is_absolute() else str(root / pattern)
        matches = sorted(
            Path(p)
            for p in globlib.glob(full, recursive=True)
            if Path(p).is_file() and Path(p).suffix.lower() in FILE_SUFFIXES
        )
        if not matches:
            raise SourceError(
                f"{self.where}.glob: {pattern!r} matches no {'/'.join(FILE_SUFFIXES)} file under {root}"
            )
        for path in matches:
            try:
                raw = path.read_text(encoding=self.config.encoding)
            except (OSError, UnicodeDecodeError) as exc:
                raise SourceError(f"{self.where}: cannot read {path}: {exc}") from exc
            rel = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
            if path.suffix.lower() in (".html", ".htm"):
                title, text = html_to_text(raw)
            else:
                text = raw
                title = _first_heading(raw) if path.suffix.lower() != ".txt" else None
            yield self.document(rel, text, {"title": title or path.stem, "path": rel})


def _first_heading(markdown: str) -> str | None:
    for line in markdown.splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return None


class _TextExtractor(HTMLParser):
    _SKIP = frozenset({"script", "style", "head", "noscript", "template"})
    _BLOCK = frozenset(
        {"p", "div", "br", "li", "ul", "ol", "tr", "table", "pre", "section", "article",
         "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "hr", "dt", "dd"}
    )  # fmt: skip

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title: str | None = None
        self._h1: str | None = None
        self._stack: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._stack.append(tag)
        if tag in self._BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._stack:
            while self._stack and self._stack.pop() != tag:
                pass
        if tag in self._BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if "title" in self._stack and self.title is None:
            self.title = data.strip() or None
        if any(t in self._SKIP for t in self._stack):
            return
        if "h1" in self._stack and self._h1 is None:
            self._h1 = data.strip() or None
        self.parts.append(data)


def html_to_text(html: str) -> tuple[str | None, str]:
    """(title, visible text) of an HTML page, paragraphs on their own lines."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.parts).splitlines())
    text = "\n".join(line for line in lines if line)
    return parser.title or parser._h1, text


# -- jsonl ---------------------------------------------------------------------


class JsonlConfig(SourceConfig):
    kind: str = "jsonl"
    path: Path = Field(description="JSONL file, relative to the project folder")


@register_source
class JsonlSource(Source):
    """One JSON object per line: `id` (str or int), `text` (str), optional flat `metadata`."""

    kind = "jsonl"
    Config = JsonlConfig

    def documents(self) -> Iterator[Document]:
        assert isinstance(self.config, JsonlConfig)
        path = self.config.path
        if not path.is_absolute():
            path = self.project_dir / path
        if not path.is_file():
            raise SourceError(f"{self.where}.path: {path} does not exist")
        rel = (
            path.relative_to(self.project_dir).as_posix()
            if path.is_relative_to(self.project_dir)
            else str(path)
        )
        seen: set[str] = set()
        for at, _, row in jsonl.objects(path, SourceError, prefix=self.where,
                                    what="an object with id and text"):
            local_id, text = row.get("id"), row.get("text")
            if isinstance(local_id, bool) or not isinstance(local_id, str | int):
                raise SourceError(f"{at}: `id` must be a string or an integer")
            if not isinstance(text, str):
                raise SourceError(f"{at}: `text` must be a string")
            metadata = row.get("metadata") or {}
            if not isinstance(metadata, dict) or not all(
                isinstance(v, Scalar) for v in metadata.values()
            ):
                raise SourceError(f"{at}: `metadata` must map keys to str/int/float/bool")
            local_id = str(local_id)
            if local_id in seen:
                raise SourceError(f"{at}: duplicate id {local_id!r}")
            seen.add(local_id)
            meta: dict[str, Scalar] = {"title": local_id, "path": rel, **metadata}
            yield self.document(local_id, text, meta)
        if not seen:
            raise SourceError(f"{self.where}.path: {path} holds no document")
