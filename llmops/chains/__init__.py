"""Chains: LangChain runnables over a pinned prompt, the live index and an LLM backend,
versioned as `chain.<name>` pyfunc models."""

from llmops.chains.api import LogResult, load, load_local, log, promote
from llmops.chains.llm import LLM, Generation, LLMSpec, create_llm, register_backend
from llmops.chains.runtime import Chain, ChainResult, register_kind

__all__ = [
    "LLM",
    "Chain",
    "ChainResult",
    "Generation",
    "LLMSpec",
    "LogResult",
    "create_llm",
    "load",
    "load_local",
    "log",
    "promote",
    "register_backend",
    "register_kind",
]
