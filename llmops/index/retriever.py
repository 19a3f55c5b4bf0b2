"""The index as a LangChain retriever, for chains built from runnables."""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever

from llmops.config import Settings
from llmops.index.config import IndexConfig
from llmops.index.reader import query


class IndexRetriever(BaseRetriever):
    """Retrieves `k` chunks; each Document's metadata has `id`, `score` and `index_version`."""

    k: int = 5
    where: dict[str, Any] | None = None
    settings: Settings | None = None
    config: IndexConfig | None = None

    def _get_relevant_documents(
        self, query_text: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        hits = query(query_text, self.k, where=self.where, settings=self.settings, config=self.config)
        return [
            Document(
                page_content=h.text,
                id=h.id,
                metadata={**h.metadata, "id": h.id, "score": h.score, "index_version": h.index_version},
            )
            for h in hits
        ]


def as_retriever(
    k: int = 5,
    *,
    where: dict[str, Any] | None = None,
    settings: Settings | None = None,
    config: IndexConfig | None = None,
) -> IndexRetriever:
    """A LangChain `BaseRetriever` over the index.

    Example:
        >>> docs = llmops.index.as_retriever(k=3).invoke("how does the with statement work")
    """
    return IndexRetriever(k=k, where=where, settings=settings, config=config)
