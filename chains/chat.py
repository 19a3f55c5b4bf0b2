"""chain.chat: a plain assistant, prompt then LLM (no retrieval)."""

import mlflow

from llmops.chains.model import ChainModel

mlflow.models.set_model(ChainModel())
