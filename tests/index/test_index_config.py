"""Index config, sources and chunking: the bad cases give one clear line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from index_helpers import INDEX_SECTION, Project
from typer.testing import CliRunner

from llmops.cli import app
from llmops.config import get_settings
from llmops.errors import ConfigError
from llmops.index import IndexConfig, SourceError, load_index_config, refresh, source_kinds
from llmops.index.chunking import chunk_documents
from llmops.index.sources import Document, Source, html_to_text, register_source

REPO = Path(__file__).resolve().parents[2]


def _with_source(**source: Any) -> dict[str, Any]:
    return {**INDEX_SECTION, "sources": [source]}


# (index section, exception, pattern the one-line message must match)
BAD_CONFIGS = [
    (_with_source(kind="rss", url="x"), SourceError,
     r"llmops\.yaml: index\.sources\.0\.kind: unknown source kind 'rss'; known: files, jsonl"),
    (_with_source(kind="jsonl", path="missing.jsonl"), SourceError,
     r"index\.sources\.0 \(jsonl 'jsonl'\)\.path: .*missing\.jsonl does not exist"),
    (_with_source(kind="files", glob="nowhere/*.md"), SourceError,
     r"index\.sources\.0 \(files 'files'\)\.glob: 'nowhere/\*\.md' matches no \.md/"),
    (_with_source(kind="files", glob="*.md", recursive=True), ConfigError,
     r"llmops\.yaml: index\.sources\.0\.recursive: unknown key"),
    (_with_source(kind="jsonl"), ConfigError, r"index\.sources\.0\.path: Field required"),
    ({**INDEX_SECTION, "chunk_size": 100, "chunk_overlap": 100}, ConfigError,
     r"llmops\.yaml: index: chunk_overlap \(100\) must be smaller than chunk_size \(100\)"),
    ({**INDEX_SECTION, "colection": "x"}, ConfigError, r"index\.colection: unknown key"),
    ({**INDEX_SECTION, "collection": "ab"}, ConfigError, r"index\.collection: String should"),
    ({**INDEX_SECTION, "sources": []}, SourceError, r"index\.sources: no source configured"),
    ({**INDEX_SECTION, "sources": [{"kind": "jsonl", "path": "kb.jsonl"}] * 2}, ConfigError,
     r"two sources are named 'jsonl'"),
    ({**INDEX_SECTION, "sources": [{"path": "kb.jsonl"}]}, ConfigError,
     r"index\.sources\.0: expected a mapping with a `kind`"),
]  # fmt: skip


@pytest.mark.parametrize(("section", "error", "pattern"), BAD_CONFIGS)
def test_bad_config_gives_a_clear_error(
    project: Project, section: dict[str, Any], error: type[Exception], pattern: str
) -> None:
    project.write_config(section)
    with pytest.raises(error, match=pattern) as info:
        refresh(progress=False)
    assert "\n" not in str(info.value)


def test_bad_config_at_the_cli_edge(project: Project) -> None:
    project.write_config(_with_source(kind="rss"))
    result = CliRunner().invoke(app, ["index", "refresh", "--no-progress"])
    assert result.exit_code == 2
    assert "error: " in result.output and "unknown source kind 'rss'" in result.output


@pytest.mark.parametrize(
    ("line", "pattern"),
    [
        ("not json", r"kb\.jsonl:1: not valid JSON"),
        ('{"id": 1}', r"kb\.jsonl:1: `text` must be a string"),
        ('{"id": true, "text": "x"}', r"`id` must be a string or an integer"),
        ('{"id": 1, "text": "x", "metadata": {"a": [1]}}', r"`metadata` must map keys to"),
        ('{"id": 1, "text": "x", "metadata": {"source": "y"}}', r"\['source'\] reserved"),
        ('{"id": 1, "text": "x"}\n{"id": "1", "text": "y"}', r"kb\.jsonl:2: duplicate id '1'"),
        ("\n", r"holds no document"),
    ],
)
def test_bad_jsonl_lines(project: Project, line: str, pattern: str) -> None:
    (project.root / "kb.jsonl").write_text(line)
    with pytest.raises(SourceError, match=pattern):
        refresh(progress=False)


def test_reference_project_config_round_trips(home: Path) -> None:
    cfg = load_index_config(get_settings().project_dir)
    assert cfg.collection == "python-docs"
    assert [s.kind for s in cfg.sources] == ["python-docs"]
    assert IndexConfig.from_raw(cfg.to_raw()) == cfg
    assert {"python-docs", "files", "jsonl"} <= set(source_kinds())


def test_python_docs_source_reads_the_interpreters_topics() -> None:
    from llmops.index.sources import PythonDocsConfig, make_source

    src = make_source(PythonDocsConfig(topics=["with", "for"]), REPO, "index.sources.0")
    docs = {d.id: d for d in src.documents()}
    assert sorted(docs) == ["python-docs:for", "python-docs:with"]
    meta = docs["python-docs:with"].metadata
    assert meta["title"] == 'The "with" statement'
    assert meta["url"].startswith("https://docs.python.org/3.")
    assert meta["source"] == "python-docs" and meta["doc_id"] == "python-docs:with"
    assert "__enter__" in docs["python-docs:with"].text


def test_files_source_reads_markdown_text_and_html(tmp_path: Path) -> None:
    from llmops.index.sources import FilesConfig, make_source

    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "a.md").write_text("intro\n# Alpha\nbody")
    (tmp_path / "d" / "sub" / "b.txt").write_text("plain text")
    (tmp_path / "d" / "c.html").write_text(
        "<html><head><title>Gamma</title><style>p{}</style></head>"
        "<body><p>one &amp; two</p><p>three</p></body></html>"
    )
    (tmp_path / "d" / "skip.py").write_text("x = 1")
    src = make_source(FilesConfig(glob="d/**/*"), tmp_path, "index.sources.0")
    docs = {d.id: d for d in src.documents()}
    assert sorted(docs) == ["files:d/a.md", "files:d/c.html", "files:d/sub/b.txt"]
    assert docs["files:d/a.md"].metadata["title"] == "Alpha"
    assert docs["files:d/sub/b.txt"].metadata == {
        "title": "b", "path": "d/sub/b.txt", "source": "files", "doc_id": "files:d/sub/b.txt"
    }  # fmt: skip
    assert docs["files:d/c.html"].metadata["title"] == "Gamma"
    assert docs["files:d/c.html"].text == "one & two\nthree"
    assert html_to_text("<h1>Head</h1><script>x</script>ok") == ("Head", "Head\nok")


def test_chunk_ids_are_stable_and_content_addressed() -> None:
    para = "The same paragraph, twice over in one document."
    doc = Document("s:doc", f"{para}\n\n{para}\n\nAnd an ending.", {"title": "t"})
    first = chunk_documents([doc], chunk_size=60, chunk_overlap=0)
    assert chunk_documents([doc], chunk_size=60, chunk_overlap=0) == first
    ids = list(first)
    assert len(ids) == 3 and ids[1] == ids[0] + "~1"
    moved = Document("s:doc", f"A new opening line.\n\n{doc.text}", {"title": "t"})
    assert set(ids) <= set(chunk_documents([moved], chunk_size=60, chunk_overlap=0))
    relinked = chunk_documents([Document("s:doc", doc.text, {"title": "t", "url": "u"})], 60, 0)
    assert list(relinked) == ids  # same embedded text: same ids, new record hashes
    assert [c.record_hash for c in relinked.values()] != [c.record_hash for c in first.values()]
    retitled = chunk_documents([Document("s:doc", doc.text, {"title": "u"})], 60, 0)
    assert not set(retitled) & set(ids)  # the title is embedded with the text
    assert next(iter(retitled.values())).embed_text == f"u\n\n{para}"
    with pytest.raises(SourceError, match="appears twice"):
        chunk_documents([doc, doc], 60, 0)


def test_registering_a_source_kind() -> None:
    with pytest.raises(ValueError, match="already registered"):

        @register_source
        class Clash(Source):
            kind = "jsonl"

            def documents(self):  # type: ignore[no-untyped-def]
                return iter(())

    with pytest.raises(TypeError, match="set the class attribute `kind`"):

        @register_source
        class Nameless(Source):
            def documents(self):  # type: ignore[no-untyped-def]
                return iter(())
