"""Chains in the registry: log (pinning every alias), load, run, promote.

Example:
    >>> import llmops.chains as chains
    >>> chains.log("chains/rag_qa.py", prompt="qa@staging")
    >>> chains.load("chain.rag_qa@staging").invoke("How do I open a file?")
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmops.chains.config import ChainConfig, load_chain_config
from llmops.chains.kinds import require_untrusted
from llmops.chains.runtime import Chain
from llmops.config import get_settings
from llmops.errors import ChainError, NotFoundError
from llmops.llm import create_llm
from llmops.prompts.api import Prompt, next_version
from llmops.prompts.api import load as load_prompt
from llmops.prompts.spec import spec_from_text
from llmops.registry import ANY, AuditRecord, Ref, Registry, VersionInfo, get_registry

KIND = "chain"
STAGES = ("staging", "production")


@dataclass(frozen=True)
class LogResult:
    """One chain logged. In a dry run, `created` means it would be registered, `version`
    is the number it would get, and `note` says why it cannot be known exactly."""

    name: str
    version: int
    created: bool
    lineage: dict[str, Any]
    content_hash: str = ""
    dry_run: bool = False
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "created": self.created,
                "lineage": self.lineage, "content_hash": self.content_hash,
                "dry_run": self.dry_run, "note": self.note}


def _index_ref(cfg: ChainConfig) -> dict[str, Any] | None:
    """The index a rag chain reads, as logged: collection and vector-store location.

    An embedded store inside LLMOPS_HOME is logged relative to it, so the version
    works from a copied or moved home.
    """
    if cfg.kind != "rag":
        return None
    from llmops.index.config import load_index_config

    settings = get_settings()
    collection = load_index_config(settings.project_dir).collection
    vector = settings.vector
    if vector.mode == "server":
        return {"collection": collection, "mode": "server", "host": vector.host,
                "port": vector.port}
    path = Path(vector.path or settings.home_dir / "chroma").resolve()
    home = settings.home_dir.resolve()
    where = str(path.relative_to(home)) if path.is_relative_to(home) else str(path)
    return {"collection": collection, "mode": "embedded", "path": where}


def log(
    code_path: Path | str,
    *,
    prompt: str | None = None,
    adapter: str | None = None,
    registry: Registry | None = None,
) -> LogResult:
    """Register `chain.<name>` from its file and config, with every alias pinned.

    `prompt` and `adapter` replace the config's references (a candidate's, say).
    Logging the same code, config and prompt version again returns the existing version.
    `preview` says what this would do without doing it.
    """
    reg = registry or get_registry()
    code = Path(code_path)
    cfg, p, resolved, digest, lineage = _prepare(reg, code, prompt, adapter)
    name = cfg.registered_name
    existing = reg.find_by_hash(name, digest)
    if existing is not None:
        return LogResult(name, existing.version, False, _lineage_of(existing.tags), digest)
    resolved["content_hash"] = digest
    with tempfile.TemporaryDirectory() as tmp:
        prompt_path = Path(tmp) / "prompt.yaml"
        prompt_path.write_text(p.spec.to_yaml())
        model_dir = Path(tmp) / "model"
        _save_pyfunc(code, resolved, prompt_path, model_dir)
        with reg.run("chains", f"log {name}", tags={"llmops.kind": KIND}) as run:
            run.log_params({"kind": cfg.kind, "prompt": resolved["prompt"],
                            "backend": cfg.llm.backend,
                            "k": cfg.retrieval.k if cfg.retrieval else "none"})
            run.log_dict(resolved, "chain_config.json")
            info, created = reg.register(
                name, model_dir, content_hash=digest, run=run, description=cfg.description,
                tags={**lineage, "llmops.source_path": str(code),
                      **{f"chain.tag.{k}": v for k, v in cfg.tags.items()}},
            )
    return LogResult(name, info.version, created, _lineage_of(info.tags), digest)


def _prepare(
    reg: Registry, code: Path, prompt: str | None, adapter: str | None
) -> tuple[ChainConfig, Prompt, dict[str, Any], str, dict[str, Any]]:
    """(config, pinned prompt, resolved config, content hash, lineage tags) of a chain file."""
    cfg, p_info, p, resolved = _pinned(reg, code, prompt, adapter)
    # The hash covers everything the version does: code, exact prompt, adapter version,
    # base model and index reference (all resolved in `resolved`).
    digest = hashlib.sha256(
        json.dumps({"code": code.read_text(), "config": resolved,
                    "prompt_hash": p.spec.content_hash()}, sort_keys=True).encode()
    ).hexdigest()
    index = resolved.get("index") or {}
    lineage = {
        "llmops.kind": KIND,
        "lineage.prompt": p_info.name,
        "lineage.prompt_version": p_info.version,
        "lineage.index_collection": index.get("collection", "none"),
        "lineage.index_version_at_log": _index_version_now(cfg) if index else "none",
        "lineage.embedding_model": get_settings().embedding_identity if index else "none",
        "lineage.llm_backend": cfg.llm.backend,
        "lineage.base_model": resolved["llm"].get("model") or "none",
        "lineage.adapter": resolved["llm"].get("adapter") or "none",
    }
    chain_from_parts(resolved, p.spec.to_yaml())  # the kind and backend must exist
    return cfg, p, resolved, digest, lineage


def preview(
    code_path: Path | str,
    *,
    prompt: str | None = None,
    adapter: str | None = None,
    registry: Registry | None = None,
) -> LogResult:
    """What `log` would do now (`llmops chains log --dry-run`), registering nothing.

    The result has `dry_run` set; `created` means a new version would be registered.
    A prompt or adapter reference that does not resolve yet (a first push still to
    come) means a new version, with the reason in `note`.
    """
    reg = registry or get_registry()
    code = Path(code_path)
    try:
        cfg, _, _, digest, lineage = _prepare(reg, code, prompt, adapter)
    except NotFoundError as exc:
        cfg = load_chain_config(code)
        return LogResult(cfg.registered_name, next_version(reg, cfg.registered_name), True,
                         {}, dry_run=True, note=f"cannot pin yet: {exc}")
    name = cfg.registered_name
    existing = reg.find_by_hash(name, digest)
    if existing is not None:
        return LogResult(name, existing.version, False, _lineage_of(existing.tags), digest,
                         dry_run=True)
    return LogResult(name, next_version(reg, name), True, _lineage_of(lineage), digest,
                     dry_run=True)


def _pinned(
    reg: Registry, code: Path, prompt: str | None, adapter: str | None = None
) -> tuple[ChainConfig, VersionInfo, Prompt, dict[str, Any]]:
    """The chain's config with every reference resolved: the exact prompt version (checked
    against the chain), the exact adapter version, the base model, the index."""
    cfg = load_chain_config(code)
    if prompt:
        cfg = cfg.model_copy(update={"prompt": prompt})
    if adapter:
        if "adapter" not in type(cfg.llm).model_fields:
            raise ChainError(f"chain {cfg.name}: its {cfg.llm.backend} backend takes no adapter")
        cfg = cfg.model_copy(update={"llm": cfg.llm.model_copy(update={"adapter": adapter})})
    p_info = reg.resolve(cfg.prompt, kind="prompt")
    p = load_prompt(p_info.ref, registry=reg)
    _check_prompt(cfg, p)
    resolved = cfg.model_dump(mode="json") | {"prompt": p_info.ref, "index": _index_ref(cfg)}
    llm = resolved["llm"]
    if llm.get("adapter"):
        llm["adapter"] = reg.resolve(llm["adapter"], kind="adapter").ref
    if cfg.llm.backend == "local" and not llm.get("model"):
        llm["model"] = get_settings().base_model
    return cfg, p_info, p, resolved


def _index_version_now(cfg: ChainConfig) -> int | str:
    from llmops.index import current_version
    from llmops.index.config import load_index_config

    version = current_version(config=load_index_config(get_settings().project_dir))
    return "none" if version is None else version


def _lineage_of(tags: Any) -> dict[str, Any]:
    return {k.removeprefix("lineage."): v for k, v in tags.items() if k.startswith("lineage.")}


def _check_prompt(cfg: ChainConfig, p: Prompt) -> None:
    needed = [cfg.question_variable] + ([cfg.context_variable] if cfg.kind == "rag" else [])
    missing = [v for v in needed if v not in p.spec.variables]
    if missing:
        raise ChainError(
            f"chain {cfg.name}: prompt {p.ref} lacks variable(s) {', '.join(missing)} "
            f"(it declares {', '.join(p.spec.variables) or 'none'})"
        )
    extra = [v for v, d in p.spec.variables.items() if d.required and v not in needed]
    if extra:
        raise ChainError(
            f"chain {cfg.name}: prompt {p.ref} requires {', '.join(extra)}, which the chain "
            "cannot fill"
        )
    require_untrusted(cfg, p)


def _save_pyfunc(code: Path, resolved: dict[str, Any], prompt_path: Path, model_dir: Path) -> None:
    import mlflow.pyfunc
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Array, ColSpec, Object, ParamSchema, ParamSpec, Property, Schema

    import llmops

    message = Object([Property("role", "string"), Property("content", "string")])
    # One of the two per row: OpenAI-style messages, or a bare question.
    inputs = Schema([ColSpec(Array(message), "messages", required=False),
                     ColSpec("string", "question", required=False)])
    outputs = Schema([ColSpec("string", "answer")])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        mlflow.pyfunc.save_model(
            path=str(model_dir),
            python_model=str(code),
            model_config=resolved,
            artifacts={"prompt": str(prompt_path)},
            signature=ModelSignature(
                inputs=inputs, outputs=outputs,
                # 0: the backend's default (16 rows at once remote, 8 batched locally).
                params=ParamSchema([ParamSpec("max_concurrency", "integer", 0),
                                    ParamSpec("contexts", "boolean", False),
                                    ParamSpec("on_error", "string", "raise")]),
            ),
            pip_requirements=[f"llmops=={llmops.__version__}", "mlflow", "langchain-core"],
        )


def chain_from_parts(
    resolved: dict[str, Any], prompt_yaml: str, *, version: int | None = None
) -> Chain:
    """A Chain from its resolved config and pinned prompt (what a logged version holds)."""
    cfg_data = {k: v for k, v in resolved.items() if k != "content_hash"}
    cfg_data["llm"] = _without_legacy_defaults(cfg_data.get("llm") or {})
    prompt_ref = Ref.parse(cfg_data["prompt"], kind="prompt")
    cfg = ChainConfig.model_validate(cfg_data)
    prompt = Prompt(spec_from_text(prompt_yaml, "prompt.yaml"), prompt_ref.version)
    return Chain(cfg, prompt, create_llm(cfg.llm), version=version,
                 content_hash=resolved.get("content_hash"), tracing=get_settings().tracing)


# Versions logged before each backend had its own options carry every backend's
# fields at their defaults; those (and only those) are dropped when they load.
_LEGACY_DEFAULTS = {"model": None, "adapter": None, "base_url": None,
                    "api_key_env": "OPENAI_API_KEY", "timeout_s": 60.0, "max_retries": 3,
                    "repetition_penalty": 1.0}


def _without_legacy_defaults(llm: dict[str, Any]) -> dict[str, Any]:
    from llmops.llm import backend_class

    try:
        fields = backend_class(llm.get("backend", "local")).Options.model_fields
    except ChainError:
        return llm  # an unknown backend: the error comes from validation
    return {k: v for k, v in llm.items()
            if k in fields or k not in _LEGACY_DEFAULTS or v != _LEGACY_DEFAULTS[k]}


def load(ref: str, *, registry: Registry | None = None) -> Chain:
    """A registered chain version (`rag_qa@production`, `chain.rag_qa/3`), ready to invoke."""
    import yaml

    reg = registry or get_registry()
    info = reg.resolve(ref, kind=KIND)
    folder = reg.download(info.name, info.version)
    mlmodel = yaml.safe_load((folder / "MLmodel").read_text())
    resolved = mlmodel["flavors"]["python_function"].get("config") or {}
    if not resolved:
        raise ChainError(f"{info.ref}: no config in its MLmodel; not an llmops chain")
    prompt_yaml = (folder / "artifacts" / "prompt.yaml").read_text()
    return chain_from_parts(resolved, prompt_yaml, version=info.version)


def load_local(code_path: Path | str, *, prompt: str | None = None, adapter: str | None = None,
               registry: Registry | None = None) -> Chain:
    """A chain straight from its file and config, unregistered (for notebooks)."""
    _, _, p, resolved = _pinned(registry or get_registry(), Path(code_path), prompt, adapter)
    return chain_from_parts(resolved, p.spec.to_yaml())


def promote(name: str, version: int, to: str, *, expect: int | Any | None = ANY,
            reason: str = "", registry: Registry | None = None,
            dry_run: bool = False) -> AuditRecord:
    """Move `to` (staging or production) to `version`, compare-and-set (`dry_run`: check
    only; the record it would leave)."""
    if to not in STAGES:
        raise ChainError(f"--to must be one of {', '.join(STAGES)}, not {to!r}")
    reg = registry or get_registry()
    return reg.move_alias(Ref.parse(name, kind=KIND).name, to, version, expect=expect,
                          reason=reason, dry_run=dry_run)
