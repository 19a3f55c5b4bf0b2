"""Embedding backends beside sentence-transformers' torch `encode`.

`embedding_backend` in the settings picks one; `llmops.hub.load_embedder` builds it:
- `torch`: the sentence-transformers model as it is (float32);
- `torch-bf16`: the same model under bfloat16 autocast: close to float32
  (cosine > 0.9999) and faster on CPUs with AVX-512 BF16 or AMX (1.7x measured);
- `onnx`: the transformer exported to ONNX (BERT-family models also get ONNX
  Runtime's attention and layer-norm fusions), float32, run by ONNX Runtime;
- `onnx-int8`: the same graph with int8 weights (per channel) and dynamically
  quantized activations: the fastest, and the furthest from float32.

The ONNX file is exported once per model, backend and ONNX Runtime version into
`models_dir/onnx/<digest>/` (atomically, under a file lock) and reused by every
process. Pooling and normalization follow the model's sentence-transformers modules
(mean, CLS or max pooling; `Normalize`), so vectors compare with torch's.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock

from llmops.errors import HubError

logger = logging.getLogger(__name__)

RECIPE = 1  # bump when the export or the quantization changes: a new digest, a new file
_digests: dict[tuple[Path, str], str] = {}


class Bf16Embedder:
    """A sentence-transformers model whose `encode` runs under bfloat16 autocast."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def encode(self, texts: list[str], batch_size: int = 32, **kwargs: Any) -> np.ndarray:
        import torch

        device = "cuda" if str(self.model.device).startswith("cuda") else "cpu"
        with torch.autocast(device, dtype=torch.bfloat16):
            out = self.model.encode(texts, batch_size=batch_size, convert_to_numpy=True,
                                    **{k: v for k, v in kwargs.items() if k != "convert_to_numpy"})
        return np.asarray(out, dtype=np.float32)

    def get_sentence_embedding_dimension(self) -> int | None:
        return int(self.model.get_sentence_embedding_dimension())

    @property
    def tokenizer(self) -> Any:
        return self.model.tokenizer

    @property
    def max_seq_length(self) -> int:
        return int(self.model.max_seq_length)


class OnnxEmbedder:
    """A sentence-transformers model run by ONNX Runtime; `encode` as sentence-transformers'.

    Thread-safe: ONNX Runtime sessions are; the tokenizer is called under a lock.
    """

    def __init__(self, model_dir: Path, onnx_file: Path, *, threads: int | None = None) -> None:
        import onnxruntime as ort
        from transformers import AutoTokenizer

        layout = _layout(model_dir)
        self.pooling: str = layout["pooling"]
        self.normalize: bool = layout["normalize"]
        self.max_length: int = layout["max_seq_length"]
        self.dimension: int = layout["dimension"]
        self.tokenizer = AutoTokenizer.from_pretrained(layout["transformer"])
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(onnx_file), options,
                                            providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.tokenize_lock = threading.Lock()

    def get_sentence_embedding_dimension(self) -> int:
        return self.dimension

    @property
    def max_seq_length(self) -> int:
        return self.max_length

    def encode(self, texts: list[str] | str, batch_size: int = 32, *,
               normalize_embeddings: bool = False, **_: Any) -> np.ndarray:
        """Float32 embeddings, one row per text, in order.

        Texts are tokenized `batch_size` at a time but run one by one: unpadded, a
        sequence costs what its own tokens cost (faster on CPU than padded batches of
        mixed lengths), and a text's vector never depends on the texts beside it (with
        int8 activations quantized per call, a batch would share one scale)."""
        single = isinstance(texts, str)
        items = [texts] if isinstance(texts, str) else list(texts)
        out = np.zeros((len(items), self.dimension), dtype=np.float32)
        for start in range(0, len(items), batch_size):
            with self.tokenize_lock:
                enc = self.tokenizer(items[start:start + batch_size], padding=False,
                                     truncation=True, max_length=self.max_length)
            for row in range(len(enc["input_ids"])):
                feed = {name: np.asarray([enc[name][row]], dtype=np.int64)
                        for name in self.inputs}
                hidden = self.session.run(None, feed)[0]
                out[start + row] = _pool(hidden, np.ones(hidden.shape[:2]), self.pooling)[0]
        if self.normalize or normalize_embeddings:
            out /= np.clip(np.linalg.norm(out, axis=1, keepdims=True), 1e-12, None)
        return out[0] if single else out


def _pool(hidden: np.ndarray, mask: np.ndarray, how: str) -> np.ndarray:
    if how == "cls":
        return hidden[:, 0]
    m = mask[..., None].astype(np.float32)
    if how == "max":
        return np.where(m > 0, hidden, -1e9).max(axis=1)
    return (hidden * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)


def _layout(model_dir: Path) -> dict[str, Any]:
    """The transformer folder, pooling, normalization and sequence length of a
    sentence-transformers folder; a clear error for what the ONNX path cannot run."""
    modules = json.loads((model_dir / "modules.json").read_text())
    kinds = {m["type"].rsplit(".", 1)[-1]: m for m in modules}
    unknown = sorted(set(kinds) - {"Transformer", "Pooling", "Normalize"})
    if unknown or "Transformer" not in kinds or "Pooling" not in kinds:
        raise HubError(f"{model_dir}: the ONNX backends run Transformer, Pooling and Normalize "
                       f"modules; this model has {sorted(kinds)}: use embedding_backend: torch")
    pool_cfg = json.loads((model_dir / kinds["Pooling"]["path"] / "config.json").read_text())
    modes = [m for m in ("cls_token", "mean_tokens", "max_tokens", "mean_sqrt_len_tokens",
                         "weightedmean_tokens", "lasttoken")
             if pool_cfg.get(f"pooling_mode_{m}")]
    if modes not in (["cls_token"], ["mean_tokens"], ["max_tokens"]):
        raise HubError(f"{model_dir}: pooling {modes} is not supported by the ONNX backends "
                       "(one of cls, mean, max is); use embedding_backend: torch")
    st_cfg = model_dir / kinds["Transformer"]["path"] / "sentence_bert_config.json"
    if not st_cfg.is_file():
        st_cfg = model_dir / "sentence_bert_config.json"
    max_len = json.loads(st_cfg.read_text()).get("max_seq_length") if st_cfg.is_file() else None
    return {
        "transformer": model_dir / kinds["Transformer"]["path"],
        "pooling": modes[0].split("_")[0],
        "normalize": "Normalize" in kinds,
        "max_seq_length": int(max_len or 512),
        "dimension": int(pool_cfg["word_embedding_dimension"]),
    }


def onnx_file(model_dir: Path, backend: str, cache: Path) -> Path:
    """The ONNX file of `model_dir` for `backend` (`onnx` or `onnx-int8`), exported on
    first use into `cache/onnx/<digest>/model.onnx`."""
    if backend not in ("onnx", "onnx-int8"):
        raise HubError(f"no ONNX file for embedding backend {backend!r}")
    target = cache / "onnx" / _digest(model_dir, backend)
    done = target / "model.onnx"
    if done.is_file():
        return done
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):  # released if its holder dies
        if not done.is_file():
            partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir()
            try:
                _export(model_dir, backend, partial)
                with contextlib.suppress(FileNotFoundError):
                    shutil.rmtree(target)  # a folder left without its model file
                partial.rename(target)
            finally:
                shutil.rmtree(partial, ignore_errors=True)
    return done


def _digest(model_dir: Path, backend: str) -> str:
    key = (model_dir.resolve(), backend)
    if key not in _digests:
        import onnxruntime
        import torch

        h = hashlib.sha256(f"{RECIPE}\0{backend}\0{onnxruntime.__version__}\0"
                           f"{torch.__version__}\0".encode())
        layout = _layout(model_dir)
        for f in sorted(layout["transformer"].iterdir()):
            if f.is_file() and f.suffix in (".json", ".safetensors", ".bin", ".txt"):
                h.update(f.name.encode() + b"\0")
                with f.open("rb") as fh:
                    while block := fh.read(1 << 20):
                        h.update(block)
        _digests[key] = h.hexdigest()[:24]
    return _digests[key]


def _export(model_dir: Path, backend: str, out: Path) -> None:
    """Export the transformer, fuse (BERT family), and quantize (`onnx-int8`) into `out`."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    started = time.monotonic()
    layout = _layout(model_dir)
    logger.info("exporting %s to ONNX for embedding backend %s (once)", model_dir, backend)
    # Eager attention exports the plain pattern that ONNX Runtime's fusions recognise.
    model = AutoModel.from_pretrained(layout["transformer"], attn_implementation="eager").eval()
    tokenizer = AutoTokenizer.from_pretrained(layout["transformer"])
    sample = tokenizer(["an example", "a longer example sentence"], padding=True,
                       return_tensors="pt")
    names = [n for n in tokenizer.model_input_names if n in sample]

    class Hidden(torch.nn.Module):  # keyword arguments in, the last hidden state out
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, *args: torch.Tensor) -> torch.Tensor:
            return self.inner(**dict(zip(names, args, strict=True))).last_hidden_state

    raw = out / "raw.onnx"
    axes = {n: {0: "batch", 1: "tokens"} for n in [*names, "last_hidden_state"]}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(Hidden(), tuple(sample[n] for n in names), str(raw),
                          input_names=names, output_names=["last_hidden_state"],
                          dynamic_axes=axes, opset_version=17, dynamo=False)
    fused = raw
    if model.config.model_type == "bert":
        from onnxruntime.transformers import optimizer

        graph = optimizer.optimize_model(str(raw), model_type="bert",
                                         num_heads=model.config.num_attention_heads,
                                         hidden_size=model.config.hidden_size)
        fused = out / "fused.onnx"
        graph.save_model_to_file(str(fused))
    if backend == "onnx-int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(str(fused), str(out / "model.onnx"), weight_type=QuantType.QInt8,
                         per_channel=True, extra_options={"DefaultTensorType": 1})  # float
    else:
        fused.rename(out / "model.onnx")
    for leftover in (raw, out / "fused.onnx"):
        leftover.unlink(missing_ok=True)
    (out / "source.json").write_text(json.dumps(
        {"model": str(model_dir), "backend": backend, "recipe": RECIPE,
         "seconds": round(time.monotonic() - started, 1)}, indent=1))
