"""The backend registry and each backend's own options, checked when a spec is read."""

from __future__ import annotations

import pytest

from llmops.errors import ChainError
from llmops.llm import LLM, Generation, LLMOptions, backends, create_llm, parse_options, register_backend
from llmops.llm.fake import FakeLLM, FakeOptions
from llmops.llm.local import LocalOptions
from llmops.llm.openai import OpenAIOptions

MSGS = [{"role": "user", "content": "What is a list comprehension?"}]


def test_registry_lists_builtins_and_rejects_unknown_backend() -> None:
    assert {"fake", "local", "openai"} <= set(backends())
    with pytest.raises(ChainError, match=r"unknown LLM backend 'nope'; registered: .*fake"):
        create_llm({"backend": "nope"})


def test_registering_a_backend_and_bad_registrations() -> None:
    class EchoOptions(LLMOptions):
        shout: bool = False

    @register_backend("echo-test")
    class Echo(LLM):
        Options = EchoOptions

        def generate(self, messages, *, max_tokens=None, temperature=None, seed=None):  # type: ignore[no-untyped-def]
            text = messages[-1]["content"]
            return Generation(text.upper() if self.options.shout else text, "echo", 1, 1)

    assert create_llm({"backend": "echo-test", "shout": True}).generate(MSGS).text == (
        MSGS[0]["content"].upper())
    with pytest.raises(ChainError, match="shout: Input should be a valid boolean"):
        create_llm({"backend": "echo-test", "shout": "loudly"})
    with pytest.raises(ValueError, match="already registered"):
        register_backend("echo-test")(FakeLLM)
    with pytest.raises(TypeError, match="must subclass"):
        register_backend("bad")(object)  # type: ignore[arg-type]

    class NoOptions(LLM):
        Options = dict  # type: ignore[assignment]

    with pytest.raises(TypeError, match="Options must subclass LLMOptions"):
        register_backend("bad-options")(NoOptions)


@pytest.mark.parametrize(
    ("spec", "options_class"),
    [({}, LocalOptions), ({"backend": "fake"}, FakeOptions),
     ({"backend": "local", "repetition_penalty": 1.1, "adapter": "adapter.x@production"},
      LocalOptions),
     ({"backend": "openai", "base_url": "http://127.0.0.1:1/v1", "timeout_s": 5}, OpenAIOptions)],
)
def test_a_spec_is_read_as_its_backends_options(spec: dict, options_class: type) -> None:  # type: ignore[type-arg]
    options = parse_options(spec)
    assert type(options) is options_class
    assert options.model_dump(exclude_unset=True) == spec


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"backend": "fake", "temprature": 0.2}, r"temprature: not an option of the fake backend"),
        ({"backend": "local", "base_url": "http://x/v1"},
         r"base_url: not an option of the local backend \(its options: .*repetition_penalty"),
        ({"backend": "openai", "base_url": "http://x/v1", "adapter": "adapter.x/1"},
         "adapter: not an option of the openai backend"),
        ({"backend": "openai", "base_url": "http://x/v1", "max_retries": 99},
         "max_retries: Input should be less than or equal to 10"),
        ({"backend": "local", "max_tokens": 0}, "max_tokens: Input should be greater than"),
        ({"backend": "openai"}, "base_url: set llm.base_url or the OPENAI_BASE_URL variable"),
        ({"backend": 7}, "unknown LLM backend 7"),
        ("local", "expected a mapping"),
    ],
)
def test_bad_options_name_the_field(spec: object, message: str,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(ValueError, match=message):
        parse_options(spec)


def test_the_openai_endpoint_may_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1/")
    llm = create_llm({"backend": "openai"})
    assert llm.url == "http://127.0.0.1:9/v1/chat/completions"  # type: ignore[attr-defined]
