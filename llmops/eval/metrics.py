"""The metrics of `llmops eval run`, each scored by ragas on one sample.

Without a judge model (the default):
- `context_recall`: share of the reference topics among the retrieved documents
  (ragas IDBasedContextRecall over document ids);
- `hit_rate`: 1 when any reference topic is among the retrieved documents (hit rate at k);
- `string_similarity`: normalised Levenshtein similarity of answer and reference
  (ragas NonLLMStringSimilarity);
- `semantic_similarity`: cosine similarity of answer and reference under our
  embedding model (ragas SemanticSimilarity).
With a judge (`eval.judge_base_url`, any OpenAI-compatible endpoint):
`faithfulness`, `answer_relevancy`, `context_precision` (ragas, with reference).

A metric whose inputs are missing for an item, that raises, or that comes out
NaN yields a `Score` with no value and the reason: a failure, never averaged away.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from llmops.config import Settings, get_settings
from llmops.errors import EvalError

DEFAULT_METRICS = ("context_recall", "hit_rate", "string_similarity", "semantic_similarity")
JUDGE_METRICS = ("faithfulness", "answer_relevancy", "context_precision")


@dataclass(frozen=True)
class Sample:
    """One chain output beside its dataset item: what metrics score."""

    question: str
    answer: str
    reference: str | None
    topics: tuple[str, ...]
    retrieved_ids: tuple[str, ...]  # document ids of the retrieved chunks, in rank order
    contexts: tuple[str, ...]  # the context blocks the LLM saw

    def hash_of(self, fields: Sequence[str]) -> str:
        """Identity of the fields a metric reads (its score cache key)."""
        body = json.dumps({f: getattr(self, f) for f in sorted(fields)}, sort_keys=True)
        return hashlib.sha256(body.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Score:
    metric: str
    value: float | None  # None: failed; see `error`
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.value is not None


@dataclass
class Metric(ABC):
    """A named metric; `key` identifies its configuration for the cache."""

    name: ClassVar[str]
    needs: ClassVar[tuple[str, ...]] = ()  # sample fields that must be non-empty
    reads: ClassVar[tuple[str, ...]] = ()  # every sample field the score depends on
    judge: ClassVar[bool] = False
    settings: Settings = field(default_factory=get_settings, repr=False)

    @property
    def key(self) -> str:
        return self.name

    def sample_key(self, sample: Sample) -> str:
        return sample.hash_of(self.reads or self.needs)

    def missing(self, sample: Sample) -> list[str]:
        return [f for f in self.needs if not getattr(sample, f)]

    async def score(self, sample: Sample) -> Score:
        missing = self.missing(sample)
        if missing:
            return Score(self.name, None, f"no {' or '.join(missing)} for this item")
        try:
            value = float(await self._score(sample))
        except Exception as exc:  # a metric error is a per-item failure
            return Score(self.name, None, f"{type(exc).__name__}: {str(exc)[:300]}")
        if math.isnan(value) or math.isinf(value):
            return Score(self.name, None, "the metric came out NaN")
        return Score(self.name, value)

    @abstractmethod
    async def _score(self, sample: Sample) -> float: ...


def _topic_matches(topic: str, doc_id: str) -> bool:
    """`python-docs:with` matches `python-docs:with` and `with`."""
    return doc_id == topic or (":" not in topic and doc_id.split(":", 1)[-1] == topic)


def _matched_ids(sample: Sample) -> tuple[list[str], list[str]]:
    """Reference and retrieved ids in one namespace, for ragas' id-based recall."""
    retrieved = []
    for doc_id in sample.retrieved_ids:
        hit = next((t for t in sample.topics if _topic_matches(t, doc_id)), None)
        retrieved.append(hit if hit is not None else doc_id)
    return list(sample.topics), retrieved


@dataclass
class ContextRecall(Metric):
    name = "context_recall"
    needs = ("topics",)
    reads = ("topics", "retrieved_ids")

    async def _score(self, sample: Sample) -> float:
        from ragas.dataset_schema import SingleTurnSample
        from ragas.metrics._context_recall import IDBasedContextRecall

        reference, retrieved = _matched_ids(sample)
        s = SingleTurnSample(retrieved_context_ids=retrieved, reference_context_ids=reference)
        return float(await IDBasedContextRecall().single_turn_ascore(s))


@dataclass
class HitRate(Metric):
    name = "hit_rate"
    needs = ("topics",)
    reads = ("topics", "retrieved_ids")

    async def _score(self, sample: Sample) -> float:
        return float(any(_topic_matches(t, d) for t in sample.topics for d in sample.retrieved_ids))


@dataclass
class StringSimilarity(Metric):
    name = "string_similarity"
    needs = ("reference", "answer")
    reads = ("reference", "answer")

    async def _score(self, sample: Sample) -> float:
        from ragas.metrics.collections import NonLLMStringSimilarity

        result = await NonLLMStringSimilarity().ascore(
            reference=sample.reference or "", response=sample.answer)
        return float(result.value)


@dataclass
class SemanticSimilarity(Metric):
    name = "semantic_similarity"
    needs = ("reference", "answer")
    reads = ("reference", "answer")

    @property
    def key(self) -> str:
        return f"{self.name}:{self.settings.embedding_model}"

    async def _score(self, sample: Sample) -> float:
        from ragas.metrics.collections import SemanticSimilarity as RagasSemantic

        metric = RagasSemantic(embeddings=embeddings(self.settings.embedding_model))
        result = await metric.ascore(reference=sample.reference or "", response=sample.answer)
        return float(result.value)


@dataclass
class JudgeMetric(Metric):
    judge = True

    @property
    def key(self) -> str:
        e = self.settings.eval
        return f"{self.name}:{e.judge_base_url}:{e.judge_model}"


@dataclass
class Faithfulness(JudgeMetric):
    name = "faithfulness"
    needs = ("answer", "contexts")
    reads = ("question", "answer", "contexts")

    async def _score(self, sample: Sample) -> float:
        from ragas.metrics.collections import Faithfulness as RagasFaithfulness

        result = await RagasFaithfulness(llm=judge_llm(self.settings)).ascore(
            user_input=sample.question, response=sample.answer,
            retrieved_contexts=list(sample.contexts))
        return float(result.value)


@dataclass
class AnswerRelevancy(JudgeMetric):
    name = "answer_relevancy"
    needs = ("answer",)
    reads = ("question", "answer")

    @property
    def key(self) -> str:
        return f"{super().key}:{self.settings.embedding_model}"

    async def _score(self, sample: Sample) -> float:
        from ragas.metrics.collections import AnswerRelevancy as RagasRelevancy

        metric = RagasRelevancy(llm=judge_llm(self.settings),
                                embeddings=embeddings(self.settings.embedding_model))
        result = await metric.ascore(user_input=sample.question, response=sample.answer)
        return float(result.value)


@dataclass
class ContextPrecision(JudgeMetric):
    name = "context_precision"
    needs = ("reference", "contexts")
    reads = ("question", "reference", "contexts")

    async def _score(self, sample: Sample) -> float:
        from ragas.metrics.collections import ContextPrecisionWithReference

        result = await ContextPrecisionWithReference(llm=judge_llm(self.settings)).ascore(
            user_input=sample.question, reference=sample.reference or "",
            retrieved_contexts=list(sample.contexts))
        return float(result.value)


METRICS: dict[str, type[Metric]] = {
    m.name: m for m in (ContextRecall, HitRate, StringSimilarity, SemanticSimilarity,
                        Faithfulness, AnswerRelevancy, ContextPrecision)
}


def make_metrics(names: Sequence[str] | None = None, *, settings: Settings | None = None,
                 judge: bool | None = None) -> list[Metric]:
    """The metrics to run: the names given, else the defaults (plus the judge's, if one is set).

    Naming a judge metric without a judge endpoint is an error, not a silent skip.
    """
    s = settings or get_settings()
    has_judge = bool(s.eval.judge_base_url)
    if names is None:
        use_judge = has_judge if judge is None else judge
        names = list(DEFAULT_METRICS) + (list(JUDGE_METRICS) if use_judge else [])
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise EvalError(f"unknown metric(s) {', '.join(unknown)}; known: {', '.join(METRICS)}")
    chosen = [METRICS[n](settings=s) for n in dict.fromkeys(names)]
    needing = [m.name for m in chosen if m.judge]
    if needing and not has_judge:
        raise EvalError(
            f"metric(s) {', '.join(needing)} need a judge model: set eval.judge_base_url "
            "(LLMOPS_EVAL__JUDGE_BASE_URL) to an OpenAI-compatible /v1 URL"
        )
    return chosen


# -- ragas components, built once per process ------------------------------------
_components: dict[Any, Any] = {}


def embeddings(ref: str) -> Any:
    """Our embedding model as a ragas embedding (sentence-transformers, in-process)."""
    key = ("embeddings", ref)
    if key not in _components:
        from ragas.embeddings.base import BaseRagasEmbedding

        from llmops.hub import load_embedder

        class LocalEmbeddings(BaseRagasEmbedding):
            def __init__(self) -> None:
                super().__init__()
                self.model = load_embedder(ref)

            def embed_text(self, text: str, **kwargs: Any) -> list[float]:
                return self.embed_texts([text])[0]

            def embed_texts(self, texts: list[str], **kwargs: Any) -> list[list[float]]:
                vectors = self.model.encode(list(texts), normalize_embeddings=True)
                return [list(map(float, v)) for v in vectors]

            async def aembed_text(self, text: str, **kwargs: Any) -> list[float]:
                return await asyncio.to_thread(self.embed_text, text)

            async def aembed_texts(self, texts: list[str], **kwargs: Any) -> list[list[float]]:
                return await asyncio.to_thread(self.embed_texts, texts)

        _components[key] = LocalEmbeddings()
    return _components[key]


def judge_llm(settings: Settings) -> Any:
    """The judge as a ragas LLM over an OpenAI-compatible endpoint (structured JSON output)."""
    e = settings.eval
    # An async client belongs to the event loop it first ran on.
    key = ("judge", e.judge_base_url, e.judge_model, e.judge_api_key, e.judge_timeout_s,
           id(asyncio.get_running_loop()))
    if key not in _components:
        from openai import AsyncOpenAI
        from ragas.llms import llm_factory

        client = AsyncOpenAI(base_url=e.judge_base_url, api_key=e.judge_api_key or "none",
                             timeout=e.judge_timeout_s, max_retries=2)
        _components[key] = llm_factory(e.judge_model, client=client, temperature=0.0)
    return _components[key]
