"""GET /v1/models: the endpoints, as OpenAI models."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from llmops.serving.deps import AnyKey, GatewayDep
from llmops.serving.schemas import HONOURED, Model, ModelList, gated

router = APIRouter(tags=["models"])


def _model(gw: GatewayDep, name: str) -> Model:
    ep = gw.routes.endpoints[name]
    return Model(id=name, created=int(gw.started), description=ep.description,
                 variants=[v.label for v in ep.variants], parameters=parameters(gw, ep))


def parameters(gw: GatewayDep, ep: Any) -> list[str]:
    """What a request to the endpoint may set: every loaded variant's chain honours it."""
    backends: list[frozenset[str]] = [
        frozenset(getattr(live.chain, "honours", ()))
        for v in ep.variants if (live := gw.cache.get(v.ref)) is not None]
    if not backends:
        return []
    return [*HONOURED, *sorted(frozenset.intersection(*backends))]


@router.get("/v1/models", response_model=ModelList, responses=gated())
async def list_models(key: AnyKey, gw: GatewayDep) -> ModelList:
    """Every endpoint of routes.yaml, and `embeddings` (POST /v1/embeddings)."""
    return ModelList(data=[*(_model(gw, n) for n in sorted(gw.routes.endpoints)),
                           _embeddings(gw)])


def _embeddings(gw: GatewayDep) -> Model:
    return Model(id="embeddings", created=int(gw.started),
                 description=f"the index's embedding model ({gw.settings.embedding_identity}),"
                             " on POST /v1/embeddings")


@router.get("/v1/models/{model}", response_model=Model, responses=gated(404))
async def get_model(model: str, key: AnyKey, gw: GatewayDep) -> Model:
    from llmops.errors import ModelNotFoundError

    if model == "embeddings":
        return _embeddings(gw)
    if model not in gw.routes.endpoints:
        raise ModelNotFoundError(f"the model {model!r} does not exist", param="model")
    return _model(gw, model)
