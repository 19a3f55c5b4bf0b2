"""The MLflow pyfunc model of a chain version (models-from-code).

A chain file in `chains/` ends with `mlflow.models.set_model(ChainModel())`.
At log time llmops hands it the resolved config (`model_config`: exact prompt
version, retrieval, LLM) and the pinned prompt spec as the artifact
`prompt.yaml`, so a loaded chain never asks the registry for its prompt.

`predict` takes a DataFrame with a `messages` column (OpenAI-style chat
messages) or a `question` column, and returns one dict per row: the answer,
its sources and its lineage. Rows run concurrently: a remote backend takes
them as concurrent requests, the local one as batches of one `generate`.
Parameters: `max_concurrency`; `contexts` (true: each row also carries the
context blocks the LLM saw, for evaluation); `on_error` (`raise`, the default,
or `record`: a failing row gets `error` and no answer, and the others stand,
as batch jobs over many rows want; `llmops.chains.batch` uses it).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.pyfunc import PythonModel

from llmops.lineage import Lineage

# Rows in flight at once per backend: requests to a server, or rows of a local batch.
DEFAULT_CONCURRENCY = {"openai": 16, "local": 8}


class ChainModel(PythonModel):
    """Builds the Chain from its resolved config and pinned prompt."""

    def __init__(self) -> None:
        self.chain: Any = None

    # The signature is explicit at save time; a pd.DataFrame hint makes MLflow
    # infer no schema and stops its warning on every save and load.
    def load_context(self, context):
        from llmops.chains.api import chain_from_parts

        cfg = dict(context.model_config or {})
        prompt_path = Path(context.artifacts["prompt"])
        self.chain = chain_from_parts(cfg, prompt_path.read_text())

    def predict(self, context, model_input: pd.DataFrame, params=None):
        params = params or {}
        rows = _rows(model_input)
        concurrency = int(params.get("max_concurrency", 0)) or DEFAULT_CONCURRENCY.get(
            self.chain.config.llm.backend, 1)
        contexts = bool(params.get("contexts", False))
        record = str(params.get("on_error") or "raise") == "record"

        def one(row: Any) -> dict[str, Any]:
            try:
                out = self.chain.invoke(row).to_dict(contexts=contexts)
            except Exception as exc:
                if not record:
                    raise
                return {"answer": None, "sources": [], "lineage": Lineage().to_dict(),
                        **({"contexts": []} if contexts else {}),
                        "error": f"{type(exc).__name__}: {str(exc)[:500]}"}
            return {**out, "error": None} if record else out

        if concurrency == 1 or len(rows) == 1:
            return [one(r) for r in rows]
        with ThreadPoolExecutor(max_workers=min(concurrency, len(rows))) as pool:
            return list(pool.map(one, rows))


def _rows(model_input: Any) -> list[Any]:
    if isinstance(model_input, pd.DataFrame):
        records = model_input.to_dict(orient="records")
    elif isinstance(model_input, dict):
        records = [model_input]
    elif isinstance(model_input, list):
        records = model_input
    else:
        records = [str(model_input)]
    out: list[Any] = []
    for rec in records:
        if isinstance(rec, dict) and rec.get("messages") is not None:
            msgs = rec["messages"]
            out.append({"messages": [dict(m) for m in msgs]})
        elif isinstance(rec, dict):
            out.append({"question": rec.get("question")})
        else:
            out.append(rec)
    return out
