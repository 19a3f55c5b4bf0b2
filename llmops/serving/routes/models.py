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
    """Every endpoint of routes.yaml."""
    return ModelList(data=[_model(gw, n) for n in sorted(gw.routes.endpoints)])


@router.get("/v1/models/{model}", response_model=Model, responses=gated(404))
async def get_model(model: str, key: AnyKey, gw: GatewayDep) -> Model:
    from llmops.errors import ModelNotFoundError

    if model not in gw.routes.endpoints:
        raise ModelNotFoundError(f"the model {model!r} does not exist", param="model")
    return _model(gw, model)
