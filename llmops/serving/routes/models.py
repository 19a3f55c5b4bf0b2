"""GET /v1/models: the endpoints, as OpenAI models."""

from __future__ import annotations

from fastapi import APIRouter

from llmops.serving.deps import AnyKey, GatewayDep
from llmops.serving.schemas import Model, ModelList, gated

router = APIRouter(tags=["models"])


def _model(gw: GatewayDep, name: str) -> Model:
    ep = gw.routes.endpoints[name]
    return Model(id=name, created=int(gw.started), description=ep.description,
                 variants=[v.label for v in ep.variants])


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
