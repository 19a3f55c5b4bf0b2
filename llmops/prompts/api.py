"""Prompts in the registry: push, load, compare, diff, promote.

Example:
    >>> import llmops.prompts as prompts
    >>> qa = prompts.load("qa@staging")
    >>> qa.render(context="...", question="How do I open a file?")
    >>> prompts.compare(["qa/1", "qa/2"], inputs=[{...}], answers=True)
"""

from __future__ import annotations

import difflib
import json
import tempfile
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from llmops.errors import SpecError
from llmops.prompts.render import as_text, render_messages
from llmops.prompts.spec import PromptSpec, load_spec, spec_from_text
from llmops.registry import ANY, AuditRecord, Ref, Registry, VersionInfo, get_registry

KIND = "prompt"
SPEC_FILE = "prompt.yaml"
STAGES = ("staging", "production")


@dataclass(frozen=True)
class Prompt:
    """A prompt spec, and the registered version it came from (None for a local file)."""

    spec: PromptSpec
    version: int | None = None
    aliases: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def ref(self) -> str:
        return f"{self.spec.registered_name}/{self.version}" if self.version else self.name

    @property
    def messages(self) -> list[dict[str, str]]:
        """The template messages, placeholders unfilled."""
        return [m.model_dump() for m in self.spec.messages]

    @property
    def parameters(self) -> dict[str, Any]:
        return self.spec.parameters.model_dump()

    @property
    def variables(self) -> list[str]:
        return list(self.spec.variables)

    def render(self, **values: Any) -> list[dict[str, str]]:
        """The chat messages with `values` filled in (sandboxed)."""
        return render_messages(self.spec, values)

    def with_changes(self, **changes: Any) -> Prompt:
        """A local, unregistered copy with some fields changed (for notebooks).

        Example: `qa.with_changes(messages=[...])`; `push(prompt)` registers it.
        """
        data = self.spec.model_dump(mode="json")
        data.update({k: v for k, v in changes.items()})
        from llmops.prompts.spec import parse_spec

        return Prompt(parse_spec(data, f"{self.name} (changed)"))

    def __repr__(self) -> str:
        return f"Prompt({self.ref!r}, aliases={list(self.aliases)})"


@dataclass(frozen=True)
class PushResult:
    """One prompt pushed. In a dry run, `created` means it would be registered, and
    `version` is the number it would get (the registry's next one)."""

    name: str
    version: int
    created: bool
    path: str
    content_hash: str = ""
    dry_run: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "created": self.created,
                "path": self.path, "content_hash": self.content_hash, "dry_run": self.dry_run}


def _registry(registry: Registry | None) -> Registry:
    return registry or get_registry()


def default_paths(project_dir: Path) -> list[Path]:
    return sorted((project_dir / "prompts").glob("*.yaml"))


def push(
    sources: Iterable[Path | str | Prompt] | None = None,
    *,
    registry: Registry | None = None,
    dry_run: bool = False,
) -> list[PushResult]:
    """Register every prompt whose content changed; unchanged ones return their version.

    All files are validated before anything is registered: one bad file
    registers nothing. `dry_run`: say what would be registered; change nothing.
    """
    reg = _registry(registry)
    items: list[tuple[PromptSpec, str]] = []
    if sources is None:
        sources = default_paths(reg.settings.project_dir)
        if not sources:
            raise SpecError(f"no prompt files in {reg.settings.project_dir / 'prompts'}")
    for src in sources:
        if isinstance(src, Prompt):
            items.append((src.spec, "<notebook>"))
        else:
            path = Path(src)
            if path.is_dir():
                found = sorted(path.glob("*.yaml"))
                if not found:
                    raise SpecError(f"{path}: no *.yaml prompt files")
                items.extend((load_spec(p), str(p)) for p in found)
            else:
                items.append((load_spec(path), str(path)))
    names = [s.name for s, _ in items]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise SpecError(f"prompt(s) given twice: {', '.join(dupes)}")
    if dry_run:
        return [_preview_one(reg, spec, where) for spec, where in items]
    return [_push_one(reg, spec, where) for spec, where in items]


def next_version(reg: Registry, name: str) -> int:
    """The number the registry would give `name`'s next version."""
    if not reg.exists(name):
        return 1
    return max((v.version for v in reg.list_versions(name)), default=0) + 1


def _preview_one(reg: Registry, spec: PromptSpec, where: str) -> PushResult:
    name, digest = spec.registered_name, spec.content_hash()
    existing = reg.find_by_hash(name, digest)
    if existing is not None:
        return PushResult(name, existing.version, False, where, digest, dry_run=True)
    return PushResult(name, next_version(reg, name), True, where, digest, dry_run=True)


def _push_one(reg: Registry, spec: PromptSpec, where: str) -> PushResult:
    name, digest = spec.registered_name, spec.content_hash()
    existing = reg.find_by_hash(name, digest)
    if existing is not None:
        return PushResult(name, existing.version, False, where, digest)
    with tempfile.TemporaryDirectory() as tmp:
        spec_path = Path(tmp) / SPEC_FILE
        spec_path.write_text(spec.to_yaml())
        model_dir = Path(tmp) / "model"
        _save_pyfunc(spec, spec_path, model_dir)
        with reg.run("prompts", f"push {name}", tags={"llmops.kind": KIND}) as run:
            run.log_params({"prompt": spec.name, "variables": ",".join(spec.variables),
                            **{f"param.{k}": v for k, v in spec.parameters.model_dump().items()}})
            run.log_text(spec.to_yaml(), SPEC_FILE)
            info, created = reg.register(
                name, model_dir, content_hash=digest, run=run, description=spec.description,
                tags={"llmops.kind": KIND, "llmops.source_path": where,
                      **{f"prompt.tag.{k}": v for k, v in spec.tags.items()}},
            )
    return PushResult(name, info.version, created, where, digest)


def _save_pyfunc(spec: PromptSpec, spec_path: Path, model_dir: Path) -> None:
    import mlflow.pyfunc
    import pandas as pd
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Array, ColSpec, Object, Property, Schema

    import llmops

    inputs = Schema([ColSpec("string", v, required=d.required) for v, d in spec.variables.items()])
    message = Object([Property("role", "string"), Property("content", "string")])
    outputs = Schema([ColSpec(Array(message), "messages")])
    with warnings.catch_warnings():
        # MLflow nags about type hints and example inference; the signature is explicit.
        warnings.simplefilter("ignore", UserWarning)
        mlflow.pyfunc.save_model(
            path=str(model_dir),
            python_model=str(Path(__file__).with_name("pyfunc.py")),
            artifacts={"prompt": str(spec_path)},
            signature=ModelSignature(inputs=inputs, outputs=outputs),
            input_example=pd.DataFrame([{v: f"<{v}>" for v in spec.variables}]),
            # Explicit requirements: inference would import and run the model.
            pip_requirements=[f"llmops=={llmops.__version__}", "mlflow", "pandas", "pyyaml"],
        )


def load(ref: str | Path, *, registry: Registry | None = None) -> Prompt:
    """A prompt by reference (`qa@staging`, `qa/3`, `qa`), or from a local YAML file."""
    if isinstance(ref, Path) or str(ref).endswith((".yaml", ".yml")):
        return Prompt(load_spec(Path(ref)))
    reg = _registry(registry)
    info = reg.resolve(str(ref), kind=KIND)
    return _from_version(reg, info)


def _from_version(reg: Registry, info: VersionInfo) -> Prompt:
    folder = reg.download(info.name, info.version)
    path = folder / "artifacts" / SPEC_FILE
    return Prompt(spec_from_text(path.read_text(), str(path)), info.version, info.aliases)


def versions(name: str, *, registry: Registry | None = None) -> list[VersionInfo]:
    reg = _registry(registry)
    return reg.list_versions(Ref.parse(name, kind=KIND).name)


def list_prompts(*, registry: Registry | None = None) -> list[dict[str, Any]]:
    """One summary per registered prompt: latest version and where the aliases point."""
    return _registry(registry).summaries(f"{KIND}.")


def promote(
    name: str, version: int, to: str, *, expect: int | Any | None = ANY, reason: str = "",
    registry: Registry | None = None, dry_run: bool = False,
) -> AuditRecord:
    """Move the `to` alias (staging or production) to `version`, compare-and-set
    (`dry_run`: check only; the record it would leave)."""
    if to not in STAGES:
        raise SpecError(f"--to must be one of {', '.join(STAGES)}, not {to!r}")
    reg = _registry(registry)
    full = Ref.parse(name, kind=KIND).name
    return reg.move_alias(full, to, version, expect=expect, reason=reason, dry_run=dry_run)


def _diff_view(p: Prompt) -> list[str]:
    data = {"messages": p.messages, "variables": {k: v.model_dump() for k, v in
                                                 p.spec.variables.items()},
            "parameters": p.parameters}
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100).splitlines(True)


def diff(ref_a: str, ref_b: str, *, registry: Registry | None = None) -> str:
    """Unified diff of two versions' messages, variables and parameters."""
    a, b = load(ref_a, registry=registry), load(ref_b, registry=registry)
    return "".join(difflib.unified_diff(_diff_view(a), _diff_view(b), a.ref, b.ref))


def compare(
    refs: Sequence[str | Prompt],
    inputs: Sequence[Mapping[str, Any]],
    *,
    answers: bool = False,
    max_new_tokens: int | None = None,
    log: bool = True,
    registry: Registry | None = None,
) -> Any:
    """Render each prompt on each input side by side; optionally answer with the local model.

    Returns a pandas DataFrame, one row per input, a column per prompt (and per
    answer). The table is logged to an MLflow run (its id in `df.attrs["run_id"]`).
    """
    import pandas as pd

    reg = _registry(registry)
    prompts = [r if isinstance(r, Prompt) else load(r, registry=reg) for r in refs]
    labels = _labels(prompts)
    rows: list[dict[str, Any]] = []
    asks: list[tuple[dict[str, Any], str, Prompt, Any]] = []  # (row, column, prompt, messages)
    for values in inputs:
        row: dict[str, Any] = {"input": json.dumps(dict(values), ensure_ascii=False)}
        for label, p in zip(labels, prompts, strict=True):
            messages = p.render(**values)
            row[label] = as_text(messages)
            if answers:
                asks.append((row, f"{label} answer", p, messages))
        rows.append(row)
    if asks:
        _answer_all(asks, max_new_tokens)
    df = pd.DataFrame(rows)
    if log:
        with reg.run("prompts", "compare " + " vs ".join(labels)) as run:
            run.log_params({"prompts": ",".join(labels), "inputs": len(inputs),
                            "answers": answers})
            run.log_table(df, "comparison.json")
            df.attrs["run_id"] = run.run_id
    return df


def _answer_all(asks: list[tuple[dict[str, Any], str, Prompt, Any]],
                max_new_tokens: int | None) -> None:
    """Each rendered prompt answered by the local model; concurrent calls share batches."""
    from concurrent.futures import ThreadPoolExecutor

    from llmops.llm import create_llm

    def answer(ask: tuple[dict[str, Any], str, Prompt, Any]) -> None:
        row, column, p, messages = ask
        llm = create_llm({"backend": "local",
                          "max_tokens": max_new_tokens or p.spec.parameters.max_tokens,
                          "temperature": p.spec.parameters.temperature})
        row[column] = llm.generate(messages).text

    with ThreadPoolExecutor(max_workers=min(8, len(asks))) as pool:
        list(pool.map(answer, asks))


def _labels(prompts: Sequence[Prompt]) -> list[str]:
    labels: list[str] = []
    for i, p in enumerate(prompts):
        label = p.ref if p.version else f"{p.name} (local {i + 1})"
        labels.append(label if label not in labels else f"{label} #{i + 1}")
    return labels
