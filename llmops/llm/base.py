"""The generation floor: one contract for every LLM backend, and the registry that names them.

A backend turns chat messages into a `Generation`: the text and the tokens it
cost, as the backend counted them. `stream` yields the text in pieces and then
the same `Generation` as its last item, so a streamed answer carries real
usage too. Every backend has the async twins `agenerate`/`astream`; one that
implements only the sync API gets them on a thread.

A backend declares its options as a pydantic model (`Options`, a subclass of
`LLMOptions`): options are checked when a chain's or recipe's spec is read
(`parse_options`), so an openai-only field on a local backend fails there,
naming the field, never later in a constructor.

Register a backend with `@register_backend("name")`; a spec names it in
`backend`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llmops.errors import ChainError

Messages = list[dict[str, str]]


class LLMOptions(BaseModel):
    """What every backend takes; a backend's own `Options` adds its fields."""

    model_config = ConfigDict(extra="forbid")

    backend: str = Field("local", description="registered backend name: local, openai, fake, ...")
    model: str | None = Field(None, description="local: hub reference; openai: model name")
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="0: greedy")
    max_tokens: int = Field(256, ge=1, le=32768, description="new tokens per answer, at most")


@dataclass(frozen=True)
class TokenLogprob:
    """One token of an answer with its log probability, as OpenAI's `logprobs.content`."""

    token: str
    logprob: float
    bytes: tuple[int, ...] | None = None  # the token's UTF-8 bytes (a piece of a character)
    top: tuple[TokenLogprob, ...] = ()  # the most likely tokens at its place, best first

    def to_openai(self) -> dict[str, Any]:
        out: dict[str, Any] = {"token": self.token, "logprob": self.logprob,
                               "bytes": None if self.bytes is None else list(self.bytes)}
        return {**out, "top_logprobs": [{"token": t.token, "logprob": t.logprob,
                                         "bytes": None if t.bytes is None else list(t.bytes)}
                                        for t in self.top]}

    @classmethod
    def from_openai(cls, data: dict[str, Any]) -> TokenLogprob:
        raw = data.get("bytes")
        return cls(str(data["token"]), float(data["logprob"]),
                   None if raw is None else tuple(int(b) for b in raw),
                   tuple(cls.from_openai(t) for t in data.get("top_logprobs") or ()))


@dataclass(frozen=True)
class Generation:
    """One answer and what it cost (tokens as the backend counted them).

    What a request may add: `logprobs` (asked with `logprobs`), `tool_calls` (OpenAI's
    shape; the text may then be empty, finish_reason `tool_calls`), and with `n` > 1 the
    other answers in `alternatives` (this one is the first; the token counts are of all).
    """

    text: str
    model: str
    prompt_tokens: int | None
    completion_tokens: int | None
    finish_reason: str = "stop"  # stop | length | tool_calls
    latency_s: float = 0.0
    logprobs: tuple[TokenLogprob, ...] | None = None
    tool_calls: tuple[dict[str, Any], ...] = ()
    alternatives: tuple[Generation, ...] = ()


Piece = str | Generation  # what `stream` yields: text pieces, then one Generation


class LLM:
    """The contract: `generate`, `stream` (pieces, then the Generation) and their async twins."""

    kind: ClassVar[str] = ""
    Options: ClassVar[type[LLMOptions]] = LLMOptions
    # The generation arguments the backend honours besides max_tokens, temperature and
    # seed; the gateway refuses a request for another one by name. A backend that
    # honours `stop` ends its answer before the first stop sequence (`llmops.llm.stops`),
    # in `generate` and in `stream`, and says `finish_reason="stop"`.
    honours: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, options: LLMOptions) -> None:
        self.options = options

    @property
    def spec(self) -> LLMOptions:
        return self.options

    @property
    def model_id(self) -> str:
        return self.options.model or self.kind

    def generate(self, messages: Messages, *, max_tokens: int | None = None,
                 temperature: float | None = None, seed: int | None = None,
                 stop: Sequence[str] = ()) -> Generation:
        raise NotImplementedError

    def stream(self, messages: Messages, *, max_tokens: int | None = None,
               temperature: float | None = None, seed: int | None = None,
               stop: Sequence[str] = ()) -> Iterator[Piece]:
        """Text pieces as they come, then the Generation; the default yields it all at once."""
        gen = self.generate(messages, max_tokens=max_tokens, temperature=temperature, seed=seed,
                            **_stop_kw(stop))
        if gen.text:
            yield gen.text
        yield gen

    async def agenerate(self, messages: Messages, *, max_tokens: int | None = None,
                        temperature: float | None = None, seed: int | None = None,
                        stop: Sequence[str] = (),
                        executor: Executor | None = None) -> Generation:
        """`generate` for an event loop; the default runs it on `executor` (a thread)."""
        call = functools.partial(self.generate, messages, max_tokens=max_tokens,
                                 temperature=temperature, seed=seed, **_stop_kw(stop))
        ctx = contextvars.copy_context()  # tracing spans follow the call onto the thread
        return await asyncio.get_running_loop().run_in_executor(executor, ctx.run, call)

    async def astream(self, messages: Messages, *, max_tokens: int | None = None,
                      temperature: float | None = None, seed: int | None = None,
                      stop: Sequence[str] = (),
                      executor: Executor | None = None) -> AsyncIterator[Piece]:
        """`stream` for an event loop; the default runs it on `executor` and hands pieces over.

        Closing the iterator early stops the thread at its next piece.
        """
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        halt = threading.Event()

        def hand(item: Any) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody is reading
                loop.call_soon_threadsafe(queue.put_nowait, item)

        def work() -> None:
            try:
                for piece in self.stream(messages, max_tokens=max_tokens,
                                         temperature=temperature, seed=seed,
                                         **_stop_kw(stop)):
                    if halt.is_set():
                        return
                    hand(piece)
                hand(END)
            except BaseException as exc:  # raised to the reader below
                hand(Failed(exc))

        ctx = contextvars.copy_context()
        loop.run_in_executor(executor, ctx.run, work)
        try:
            while (item := await queue.get()) is not END:
                if isinstance(item, Failed):
                    raise item.exc
                yield item
        finally:
            halt.set()


# Generation options a backend may honour (named in its `honours`), as OpenAI defines them:
# nucleus sampling, penalties on the logits of tokens already in the answer, JSON mode,
# log probabilities, several answers, and tools passed to a model that calls them.
SAMPLING = {"top_p": (0.0, 1.0), "presence_penalty": (-2.0, 2.0),
            "frequency_penalty": (-2.0, 2.0)}
OPTIONS = (*SAMPLING, "response_format", "logprobs", "top_logprobs", "n", "tools",
           "tool_choice", "parallel_tool_calls")
MAX_TOP_LOGPROBS = 20  # OpenAI's bound
MAX_N = 8  # answers per request, at most


def check_options(llm: LLM, options: dict[str, Any] | Any) -> dict[str, Any]:
    """Generation `options` checked: each one the backend honours, with a value within
    OpenAI's bounds; numbers as floats, `response_format` one of OpenAI's
    (`llmops.llm.structured`)."""
    out: dict[str, Any] = {}
    for name, value in options.items():
        if name not in OPTIONS or name not in llm.honours:
            raise ChainError(f"the {llm.kind or type(llm).__name__} backend does not "
                             f"honour {name}")
        out[name] = _checked(name, value)
    if "top_logprobs" in out and not out.get("logprobs"):
        raise ChainError("top_logprobs needs logprobs: true")
    return out


def _checked(name: str, value: Any) -> Any:
    if name in SAMPLING:
        low, high = SAMPLING[name]
        if isinstance(value, bool) or not isinstance(value, int | float) or not (
                low <= float(value) <= high):
            raise ChainError(f"{name} must be a number within [{low:g}, {high:g}], not {value!r}")
        return float(value)
    if name == "response_format":
        from llmops.llm.structured import parse_format

        parse_format(value)
    elif name in ("logprobs", "parallel_tool_calls") and not isinstance(value, bool):
        raise ChainError(f"{name} must be true or false, not {value!r}")
    elif name == "top_logprobs" and not _int_within(value, 0, MAX_TOP_LOGPROBS):
        raise ChainError(f"top_logprobs must be an integer within [0, {MAX_TOP_LOGPROBS}], "
                         f"not {value!r}")
    elif name == "n" and not _int_within(value, 1, MAX_N):
        raise ChainError(f"n must be an integer within [1, {MAX_N}], not {value!r}")
    elif name == "tools" and not (isinstance(value, list) and all(
            isinstance(t, dict) and t.get("type") == "function"
            and isinstance(t.get("function"), dict) and t["function"].get("name")
            for t in value)):
        raise ChainError("tools must be a list of {type: function, function: {name, ...}}")
    return value


def _int_within(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _stop_kw(stop: Sequence[str]) -> dict[str, Any]:
    """`stop` as a keyword only when asked for: a backend that does not honour it (no
    `stop` in its signature) still serves every request without one."""
    return {"stop": stop} if stop else {}


END = object()  # the end of a handed-over stream


@dataclass(frozen=True)
class Failed:
    """A failure handed over a queue, raised by the reader."""

    exc: BaseException


def text_of(pieces: Iterator[Piece]) -> str:
    """The text of a stream (its pieces joined; the final Generation skipped)."""
    return "".join(p for p in pieces if isinstance(p, str))


# -- the registry -----------------------------------------------------------------
_BACKENDS: dict[str, type[LLM]] = {}


def register_backend(name: str) -> Callable[[type[LLM]], type[LLM]]:
    """Class decorator: make a backend available under `name`."""

    def deco(cls: type[LLM]) -> type[LLM]:
        if not isinstance(cls, type) or not issubclass(cls, LLM):
            raise TypeError(f"backend {name!r}: {getattr(cls, '__name__', cls)} must subclass "
                            "llmops.llm.LLM")
        if not issubclass(cls.Options, LLMOptions):
            raise TypeError(f"backend {name!r}: {cls.__name__}.Options must subclass LLMOptions")
        if name in _BACKENDS and _BACKENDS[name] is not cls:
            raise ValueError(f"backend {name!r} is already registered by {_BACKENDS[name]!r}")
        cls.kind = name
        _BACKENDS[name] = cls
        return cls

    return deco


def backends() -> list[str]:
    return sorted(_BACKENDS)


def backend_class(name: str) -> type[LLM]:
    cls = _BACKENDS.get(name)
    if cls is None:
        raise ChainError(f"unknown LLM backend {name!r}; registered: {', '.join(backends())}")
    return cls


def parse_options(data: Any) -> LLMOptions:
    """A spec's `llm` section as its backend's options; every problem named by field.

    Raises:
        ValueError: unknown backend, unknown field for that backend, or a bad value
            (pydantic reports it at the spec's `llm` key).
    """
    if isinstance(data, LLMOptions):
        return data
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError(f"expected a mapping with a backend, not {type(data).__name__}")
    name = data.get("backend", "local")
    cls = _BACKENDS.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ValueError(f"unknown LLM backend {name!r}; registered: {', '.join(backends())}")
    try:
        return cls.Options.model_validate(data)
    except ValidationError as exc:
        allowed = ", ".join(cls.Options.model_fields)
        problems = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"]) or "llm"
            if err["type"] == "extra_forbidden":
                problems.append(f"{key}: not an option of the {name} backend (its options: "
                                f"{allowed})")
            else:
                problems.append(f"{key}: {err['msg']}")
        raise ValueError("; ".join(problems)) from None


def create_llm(spec: LLMOptions | dict[str, Any] | None = None) -> LLM:
    """A backend instance for a spec; an unknown backend or option is a ChainError."""
    try:
        options = parse_options(spec)
    except ValueError as exc:
        raise ChainError(f"llm: {exc}") from None
    return backend_class(options.backend)(options)
