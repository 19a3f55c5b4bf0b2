"""chain.rag_qa: answer questions from the team's documents.

Retrieves k chunks from the live index, renders the pinned prompt with them as
context, and asks the LLM; see rag_qa.yaml for the settings.
"""

import mlflow

from llmops.chains.model import ChainModel

mlflow.models.set_model(ChainModel())
