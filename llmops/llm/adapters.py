"""One loaded base model, many LoRA adapters: what the `local` backend serves from.

The first adapter wraps the base into a peft model, later ones are loaded
beside it; each job names its adapter, a batch holds jobs of one adapter
only, and the worker switches the adapter on for that batch (off after it).
Two chains on two adapters of one base hold one copy of its weights. An
adapter is a registry reference (`adapter.<name>@alias`, `adapter.<name>/3`:
the version's `artifacts/adapter/` folder) or a local peft folder; one that
does not fit the base is refused before peft touches the model.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from llmops.errors import ChainError, RegistryError
from llmops.llm.batching import Batcher

# peft still asks transformers for `is_gradient_checkpointing`, which warns at every call.
warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)

log = logging.getLogger(__name__)

MAX_BATCH = 16  # jobs in one generate, at most


# -- one base model, many adapters ---------------------------------------------------------
class SharedBase:
    """One loaded base model in this process: its batch worker and the adapters loaded into it.

    The first adapter wraps the model into a peft model, later ones are loaded beside
    it; each keeps its own LoRA matrices, the base weights exist once. peft injects the
    LoRA layers into the model object itself, the one `hub.load_causal_lm` hands out,
    so they are kept disabled except while a batch of their adapter runs on the worker
    thread: outside such a batch the model computes exactly what the plain base does.
    A direct user of that model (a `Batcher` of its own, a plain `model.generate`) that
    runs at the same time as an adapter batch gets that adapter's output, not the base's:
    go through a `LocalLLM`, or hold `batcher.model_lock` around the call.
    """

    def __init__(self, ref: str, model: Any, tokenizer: Any) -> None:
        self.ref, self.model, self.tokenizer = ref, model, tokenizer
        self.peft: Any = None  # the peft model around `model`, from the first adapter on
        self.adapters: dict[str, str] = {}  # adapter key -> its name in the peft model
        self._loading = threading.Lock()
        self.batcher = Batcher(model, tokenizer, max_batch=MAX_BATCH, activate=self.activate)

    def adapter(self, spec: str) -> str:
        """The name of an adapter in this base, loaded on first use.

        Args:
            spec: `adapter.<name>@alias`, `adapter.<name>/<version>`, or a local folder
                holding a peft adapter (or a downloaded adapter version).

        Raises:
            ChainError: no such adapter, or one that does not fit this base model.
        """
        key, label, folder = _adapter_files(spec)
        with self._loading:
            if key in self.adapters:
                return self.adapters[key]
            stem = re.sub(r"\W+", "_", label).strip("_")[-48:]
            name = f"{stem}_{hashlib.sha256(key.encode()).hexdigest()[:8]}"
            _check_fits(self.model, folder, label, self.ref)
            with self.batcher.model_lock:  # no batch runs while peft changes the layers
                self._load(name, folder, label)
            self.adapters[key] = name
            log.info("adapter %s loaded into %s as %s", label, self.ref, name)
            return name

    def _load(self, name: str, folder: Path, label: str) -> None:
        try:
            from peft import PeftModel
        except ImportError as exc:
            raise ChainError("adapters need peft: pip install peft") from exc
        try:
            if self.peft is None:
                self.peft = PeftModel.from_pretrained(self.model, str(folder), adapter_name=name)
            else:
                self.peft.load_adapter(str(folder), adapter_name=name)
        except Exception as exc:
            self._undo(name)
            why = " ".join(str(exc).split())[:500]  # one line: peft's can run to pages
            raise ChainError(f"adapter {label} cannot be loaded into the base model {self.ref}: "
                             f"{type(exc).__name__}: {why}") from exc
        finally:
            if self.peft is not None:  # a new adapter comes in enabled: back to the plain base
                self.peft.base_model.disable_adapter_layers()
        self.peft.eval()

    def _undo(self, name: str) -> None:
        """What a failed load left in the model goes (the adapters before it stay)."""
        if self.peft is None:
            _strip_adapter_layers(self.model)
        elif name in self.peft.peft_config:
            with contextlib.suppress(Exception):  # its layers stay disabled at worst
                self.peft.delete_adapter(name)

    @contextlib.contextmanager
    def activate(self, name: str | None) -> Iterator[None]:
        """The model set up for one batch: `name`'s layers on, or (None) the plain base.

        Called by the worker thread alone, holding `batcher.model_lock`.
        """
        if name is None:
            yield
            return
        peft = self.peft
        if peft is None or name not in peft.peft_config:
            raise ChainError(f"adapter {name} is not loaded into the base model {self.ref}")
        peft.base_model.enable_adapter_layers()
        peft.set_adapter(name, inference_mode=True)  # after enabling: no gradients
        try:
            yield
        finally:
            peft.base_model.disable_adapter_layers()

    def unload(self) -> None:
        """Take every adapter out: the model is the plain base again."""
        with self._loading, self.batcher.model_lock:
            if self.peft is not None:
                _strip_adapter_layers(self.model)
            self.peft = None
            self.adapters.clear()


_bases: dict[int, SharedBase] = {}  # id of a loaded model -> its SharedBase
_bases_lock = threading.Lock()


def shared_base(ref: str | None = None) -> SharedBase:
    """The one `SharedBase` of a loaded base model in this process (loading it on first use)."""
    from llmops.config import get_settings
    from llmops.hub import load_causal_lm

    model, tokenizer = load_causal_lm(ref)
    with _bases_lock:
        found = _bases.get(id(model))
        if found is None:
            found = _bases[id(model)] = SharedBase(ref or get_settings().base_model, model,
                                                    tokenizer)
        return found


def loaded_bases() -> list[SharedBase]:
    """The shared base models of this process, each with its batch worker and adapters."""
    with _bases_lock:
        return list(_bases.values())


def clear_batchers() -> None:
    """Forget the shared bases, their batch workers and adapters (with
    `hub.clear_model_cache`, to free the models). The base models lose their adapter
    layers; a `LocalLLM` made before keeps a worker whose adapters are gone."""
    with _bases_lock:
        bases = list(_bases.values())
        _bases.clear()
    for base in bases:
        base.unload()


def _adapter_files(spec: str) -> tuple[str, str, Path]:
    """(key, label, folder) of an adapter: a local folder, or a registry version downloaded.

    The key tells adapters apart across registries: a version's content hash (else its
    download folder), or a folder's resolved path.
    """
    path = Path(spec).expanduser()
    if path.is_absolute() or spec.startswith((".", "~")) or (path / "adapter_config.json").is_file():
        folder = path / "artifacts" / "adapter" if (path / "artifacts" / "adapter").is_dir() else path
        if not (folder / "adapter_config.json").is_file():
            raise ChainError(f"adapter {spec}: no adapter_config.json there, so not a peft adapter")
        folder = folder.resolve()
        return f"folder:{folder}", str(folder), folder
    from llmops.registry import get_registry

    reg = get_registry()
    try:
        info = reg.resolve(spec, kind="adapter")
        downloaded = reg.download(info.name, info.version)
    except RegistryError as exc:
        raise ChainError(f"adapter {spec}: {exc}") from exc
    folder = downloaded / "artifacts" / "adapter"
    if not folder.is_dir():
        folder = downloaded
    if not (folder / "adapter_config.json").is_file():
        raise ChainError(f"adapter {info.ref}: its version holds no artifacts/adapter/"
                         "adapter_config.json, so it is not a peft adapter")
    return f"{info.ref}#{info.content_hash or downloaded}", info.ref, folder


def _check_fits(model: Any, folder: Path, label: str, base_ref: str) -> None:
    """Refuse an adapter trained on another base, before peft changes the model: a LoRA
    adapter whose every module exists here, with the sizes its matrices expect.

    `base_model_name_or_path` in the adapter's config is often a local path of the
    training machine, so it is named in the message, not compared.
    """
    config = json.loads((folder / "adapter_config.json").read_text())
    trained_on = config.get("base_model_name_or_path") or "a base it does not name"
    if config.get("peft_type") != "LORA":
        raise ChainError(f"adapter {label}: a {config.get('peft_type')} adapter; the local "
                         "backend serves LoRA adapters")
    try:
        shapes = _weight_shapes(folder)
    except Exception as exc:
        raise ChainError(f"adapter {label}: its weights cannot be read: {exc}") from exc
    if not shapes:
        raise ChainError(f"adapter {label}: no adapter_model.safetensors (or .bin) in {folder}")
    modules = dict(model.named_modules())
    for key, shape in shapes.items():
        module_name, lora, part = key.removeprefix("base_model.model.").partition(".lora_")
        if not lora:
            continue  # not a LoRA matrix (modules_to_save, ...): peft checks those
        module = modules.get(module_name)
        if module is None:
            raise ChainError(f"adapter {label} does not fit the base model {base_ref}: it adapts "
                             f"{module_name}, which that model lacks (trained on {trained_on})")
        layer = getattr(module, "base_layer", module)
        size_in, size_out = getattr(layer, "in_features", None), getattr(layer, "out_features", None)
        if ((part == "A.weight" and size_in is not None and shape[-1] != size_in)
                or (part == "B.weight" and size_out is not None and shape[0] != size_out)):
            raise ChainError(f"adapter {label} does not fit the base model {base_ref}: "
                             f"{module_name} maps {size_in} to {size_out} features there, but the "
                             f"adapter's lora_{part} is {list(shape)} (trained on {trained_on})")


def _weight_shapes(folder: Path) -> dict[str, tuple[int, ...]]:
    """The shape of each tensor in an adapter's weights file, without loading them."""
    if (folder / "adapter_model.safetensors").is_file():
        from safetensors import safe_open

        with safe_open(str(folder / "adapter_model.safetensors"), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
    if (folder / "adapter_model.bin").is_file():
        import torch

        weights = torch.load(folder / "adapter_model.bin", map_location="cpu", weights_only=True)
        return {k: tuple(v.shape) for k, v in weights.items()}
    return {}


def _strip_adapter_layers(model: Any) -> None:
    """Put back every module that peft wrapped, and drop its config: the plain base again."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for name, module in list(model.named_modules()):
        if isinstance(module, BaseTunerLayer):
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, module.get_base_layer())
    model.__dict__.pop("peft_config", None)
