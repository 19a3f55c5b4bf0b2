"""The gateway: OpenAI-compatible serving of chains with A/B routing, a durable
request and feedback log, keys and limits (`llmops serve`)."""

from llmops.serving.app import create_app
from llmops.serving.gateway import Gateway, GatewayOptions
from llmops.serving.router import assign
from llmops.serving.spec import RoutesSpec, load_routes

__all__ = ["Gateway", "GatewayOptions", "RoutesSpec", "assign", "create_app", "load_routes"]
