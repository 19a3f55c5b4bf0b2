"""chain.rag_qa: answer Python questions from the Python documentation.

Retrieves k chunks from the live index, renders the pinned QA prompt with them
as context, and asks the LLM; see rag_qa.yaml for the settings.
"""

import mlflow

from llmops.chains.model import ChainModel

mlflow.models.set_model(ChainModel())
