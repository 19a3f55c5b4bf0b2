"""The MLflow pyfunc model of a prompt version (models-from-code).

MLflow loads this file, not a pickle: `predict` takes a DataFrame whose
columns are the prompt's variables and returns, per row, the rendered chat
messages. The spec travels as the artifact `prompt.yaml`.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel


class PromptModel(PythonModel):
    """Renders one registered prompt version."""

    # The signature is given explicitly at save time. `model_input` is hinted
    # pd.DataFrame only: MLflow infers no schema from that hint, and without any
    # hint it warns on every save and load.
    def load_context(self, context):
        from llmops.prompts.spec import spec_from_text

        path = Path(context.artifacts["prompt"])
        self.spec = spec_from_text(path.read_text(), source=str(path))

    def predict(self, context, model_input: pd.DataFrame, params=None):
        from llmops.prompts.render import render_messages

        if isinstance(model_input, dict):
            model_input = pd.DataFrame([model_input])
        rows = model_input.to_dict(orient="records")
        return [render_messages(self.spec, row) for row in rows]


mlflow.models.set_model(PromptModel())
