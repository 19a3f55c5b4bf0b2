"""Chains: LangChain runnables over a pinned prompt, the live index and an LLM backend
(`llmops.llm`), versioned as `chain.<name>` pyfunc models."""

from llmops.chains.api import LogResult, load, load_local, log, preview, promote
from llmops.chains.kinds import Prepared, register_kind
from llmops.chains.runtime import Chain, ChainResult

__all__ = [
    "Chain",
    "ChainResult",
    "LogResult",
    "Prepared",
    "load",
    "load_local",
    "log",
    "preview",
    "promote",
    "register_kind",
]
