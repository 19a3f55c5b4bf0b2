"""Every parameter of OpenAI's chat-completion request, sent to an endpoint on each built-in
backend: honoured (with a check of what it does, not only a 200) or refused by name with a
400. The table names every parameter the installed openai client knows."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.serving.conftest import ROUTES, auth

Q = [{"role": "user", "content": "What is the capital of France?"}]
ENDPOINTS = {"fake": "chat", "openai": "mock", "local": "local"}
LOCAL_LIMITS = {"max_tokens": 64, "timeout_s": 120, "max_concurrency": 8,
                "max_concurrency_per_key": 8}


@pytest.fixture
def routes_file(tmp_path: Path) -> Path:
    """The test routes, with an endpoint on the local model and one that passes tools."""
    path = tmp_path / "routes.yaml"
    path.write_text(yaml.safe_dump({**ROUTES, "endpoints": {
        **ROUTES["endpoints"],
        "local": {"variants": [{"ref": "chain.localchat@production", "weight": 100}],
                  "limits": LOCAL_LIMITS},
        "tools": {"variants": [{"ref": "chain.mocktools@production", "weight": 100}]}}}))
    return path


@dataclass
class T:
    """One case's world: the client, a key, the endpoint and its backend, the upstream."""

    client: Any
    key: str
    endpoint: str
    backend: str
    mock: Any

    def ask(self, endpoint: str | None = None, **params: Any) -> Any:
        body = {"model": endpoint or self.endpoint, "messages": Q, "max_tokens": 12, **params}
        return self.client.post("/v1/chat/completions", headers=auth(self.key),
                                json={k: v for k, v in body.items() if v is not None})

    def ok(self, **params: Any) -> dict[str, Any]:
        r = self.ask(**params)
        assert r.status_code == 200, r.text
        return dict(r.json())

    def answer(self, **params: Any) -> str:
        return str(self.ok(**params)["choices"][0]["message"]["content"])

    def sent(self) -> dict[str, Any]:
        """What the openai backend sent upstream last."""
        return dict(self.mock.state.bodies[-1])

    def streamed(self, **params: Any) -> tuple[str, str | None, list[dict[str, Any]]]:
        text, finish, events = "", None, []
        with self.client.stream("POST", "/v1/chat/completions", headers=auth(self.key),
                                json={"model": self.endpoint, "messages": Q, "max_tokens": 12,
                                      "stream": True, **params}) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                if line.startswith("data: {"):
                    event = json.loads(line[6:])
                    events.append(event)
                    for choice in event["choices"]:
                        if choice["index"] == 0:
                            text += choice["delta"].get("content") or ""
                            finish = choice.get("finish_reason") or finish
        return text, finish, events


# -- what each honoured parameter does -------------------------------------------------------
def _messages(t: T) -> None:
    other = [{"role": "user", "content": "Name one colour, in one word."}]
    assert t.answer() != t.answer(messages=other)  # the answer is to the messages sent


def _model(t: T) -> None:
    assert t.ok()["model"] == t.endpoint
    r = t.ask(endpoint="no-such-endpoint")
    assert r.status_code == 404 and r.json()["error"]["param"] == "model"


def _cap(name: str) -> Callable[[T], None]:
    def check(t: T) -> None:
        body = t.ok(**{"max_tokens": None, name: 2})
        assert body["usage"]["completion_tokens"] <= 2
        assert body["choices"][0]["finish_reason"] == "length"
        over = t.ask(**{"max_tokens": None, name: 10_000})  # above the endpoint's cap
        assert over.status_code == 422 and over.json()["error"]["param"] == name
    return check


def _temperature(t: T) -> None:
    if t.backend == "openai":
        t.ok(temperature=0.7)
        assert t.sent()["temperature"] == 0.7
        return
    assert len({t.answer(temperature=0, seed=s) for s in range(3)}) == 1
    assert len({t.answer(temperature=1.8, seed=s) for s in range(4)}) > 1


def _seed(t: T) -> None:
    if t.backend == "openai":
        t.ok(seed=11)
        assert t.sent()["seed"] == 11
        return
    first = t.answer(temperature=1.5, seed=11)
    assert t.answer(temperature=1.5, seed=11) == first
    assert any(t.answer(temperature=1.5, seed=s) != first for s in (12, 13, 14))


def _user(t: T) -> None:
    variants = {t.ask(user="u-7").headers["x-llmops-variant"] for _ in range(4)}
    assert len(variants) == 1  # sticky
    if t.backend == "fake":  # the one endpoint with two weighted variants
        assert len({t.ask(user=f"u-{i}").headers["x-llmops-variant"] for i in range(40)}) == 2


def _stream(t: T) -> None:
    plain = t.ok()["choices"][0]
    text, finish, _ = t.streamed()
    assert (text, finish) == (plain["message"]["content"], plain["finish_reason"])


def _stream_options(t: T) -> None:
    usage = t.ok()["usage"]
    *_, events = t.streamed(stream_options={"include_usage": True})
    assert events[-1]["choices"] == [] and events[-1]["usage"] == usage


def _stop(t: T) -> None:
    full = t.answer()
    words = full.split(" ")
    stop = words[1][-1] + " " + words[2][:2]  # spans two streamed pieces
    expected = full[:full.index(stop)].rstrip()
    choice = t.ok(stop=[stop, "never in it"])["choices"][0]
    assert (choice["message"]["content"], choice["finish_reason"]) == (expected, "stop")
    assert t.streamed(stop=stop)[:2] == (expected, "stop")
    if t.backend == "openai":
        assert t.sent()["stop"] == [stop]


def _top_p(t: T) -> None:
    if t.backend == "openai":
        t.ok(top_p=0.5)
        assert t.sent()["top_p"] == 0.5
        return
    greedy = t.answer(temperature=0)  # a nucleus of one token is greedy, whatever the seed
    assert {t.answer(temperature=1.8, top_p=1e-6, seed=s) for s in range(3)} == {greedy}


def _penalty(name: str) -> Callable[[T], None]:
    def check(t: T) -> None:
        if t.backend == "openai":
            t.ok(**{name: 0.5})
            assert t.sent()[name] == 0.5
            return
        # tokens already in the answer are pushed down: the greedy answer, which comes
        # back to its words, takes another way (the formula: tests/llm/test_local.py)
        ask = [{"role": "user", "content": "Repeat the word cat five times."}]
        plain = t.answer(messages=ask, max_tokens=24)
        assert t.answer(messages=ask, max_tokens=24) == plain
        assert t.answer(messages=ask, max_tokens=24, **{name: 2.0}) != plain
    return check


SCHEMA = {"type": "json_schema", "json_schema": {"name": "city", "schema": {
    "type": "object", "additionalProperties": False, "required": ["city"],
    "properties": {"city": {"type": "string"}}}}}


def _response_format(t: T) -> None:
    if t.backend == "openai":
        t.ok(response_format=SCHEMA)
        assert t.sent()["response_format"] == SCHEMA
        return
    assert set(json.loads(t.answer(response_format=SCHEMA, max_tokens=32))) == {"city"}


def _logprobs(t: T) -> None:
    choice = t.ok(logprobs=True)["choices"][0]
    content = choice["logprobs"]["content"]
    assert content and all(e["logprob"] <= 0 and e["top_logprobs"] == [] for e in content)
    assert "".join(e["token"] for e in content).strip() == choice["message"]["content"]
    assert all(bytes(e["bytes"]).decode("utf-8", "replace") == e["token"] for e in content)
    if t.backend == "openai":
        assert t.sent()["logprobs"] is True
    assert t.ok()["choices"][0]["logprobs"] is None  # not asked, not given
    *_, events = t.streamed(logprobs=True)
    last = next(e for e in reversed(events) if e["choices"] and e["choices"][0]["finish_reason"])
    assert [e["token"] for e in last["choices"][0]["logprobs"]["content"]] == [
        e["token"] for e in content]


def _top_logprobs(t: T) -> None:
    content = t.ok(logprobs=True, top_logprobs=3)["choices"][0]["logprobs"]["content"]
    for e in content:
        tops = [x["logprob"] for x in e["top_logprobs"]]
        assert len(tops) == 3 and tops == sorted(tops, reverse=True)
        if t.backend == "local":  # greedy: the chosen token is the most likely one
            assert (e["token"], e["logprob"]) == (e["top_logprobs"][0]["token"], tops[0])
            assert sum(math.exp(v) for v in tops) <= 1.0 + 1e-6
    r = t.ask(top_logprobs=3)  # without logprobs: refused, as OpenAI does
    assert r.status_code == 400 and "top_logprobs needs logprobs" in r.text


def _parallel_tool_calls(t: T) -> None:
    # without tools there is nothing to call: either value asks for nothing, and the
    # answer is the one without it (tools themselves are refused: see the table)
    assert t.answer(parallel_tool_calls=False) == t.answer()
    r = t.ask(parallel_tool_calls=False, tools=TOOL)
    assert r.status_code == 400 and r.json()["error"]["param"] == "tools"


def _n(t: T) -> None:
    one = t.ok()
    body = t.ok(n=3)
    assert [c["index"] for c in body["choices"]] == [0, 1, 2]
    assert {c["message"]["content"] for c in body["choices"]} == {
        one["choices"][0]["message"]["content"]}  # greedy: three times the same answer
    assert body["usage"]["completion_tokens"] == 3 * one["usage"]["completion_tokens"]
    sampled = t.ok(n=3, temperature=1.8, seed=5, max_tokens=8)["choices"]
    assert len({c["message"]["content"] for c in sampled}) > 1
    assert t.ok(n=3, temperature=1.8, seed=5, max_tokens=8)["choices"] == sampled
    text, _, events = t.streamed(n=2)
    second = "".join(c["delta"].get("content") or "" for e in events for c in e["choices"]
                     if c["index"] == 1)
    assert text == second == one["choices"][0]["message"]["content"]


@dataclass(frozen=True)
class Case:
    value: Any  # a value that asks for something
    honoured_by: tuple[str, ...] = ()
    check: Callable[[T], None] | None = None
    needs: dict[str, Any] | None = None  # sent with it (a refusal may name one of these)


EVERY = ("fake", "openai", "local")
SAMPLERS = ("openai", "local")
TOOL = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]

TABLE: dict[str, Case] = {
    "messages": Case(Q, EVERY, _messages),
    "model": Case("chat", EVERY, _model),
    "max_tokens": Case(2, EVERY, _cap("max_tokens")),
    "max_completion_tokens": Case(2, EVERY, _cap("max_completion_tokens")),
    "temperature": Case(0.7, EVERY, _temperature),
    "seed": Case(11, EVERY, _seed),
    "user": Case("u-7", EVERY, _user),
    "stream": Case(True, EVERY, _stream),
    "stream_options": Case({"include_usage": True}, EVERY, _stream_options),
    "stop": Case(["."], EVERY, _stop),
    "top_p": Case(0.5, SAMPLERS, _top_p),
    "presence_penalty": Case(0.5, SAMPLERS, _penalty("presence_penalty")),
    "frequency_penalty": Case(0.5, SAMPLERS, _penalty("frequency_penalty")),
    "response_format": Case(SCHEMA, SAMPLERS, _response_format),
    "logprobs": Case(True, SAMPLERS, _logprobs),
    "top_logprobs": Case(3, SAMPLERS, _top_logprobs, needs={"logprobs": True}),
    "n": Case(2, ("local",), _n),
    # tools pass only through a chain that declares it (test_tools.py); these chains do not
    "tools": Case(TOOL),
    "tool_choice": Case("required"),
    "parallel_tool_calls": Case(False, EVERY, _parallel_tool_calls),
    "logit_bias": Case({"50256": -100}),
    "functions": Case([{"name": "f", "parameters": {}}]),
    "function_call": Case({"name": "f"}),
    "modalities": Case(["text", "audio"]),
    "audio": Case({"voice": "alloy", "format": "mp3"}),
    "metadata": Case({"team": "a"}),
    "store": Case(True),
    "service_tier": Case("flex"),
    "prediction": Case({"type": "content", "content": "Paris"}),
    "reasoning_effort": Case("low"),
    "verbosity": Case("low"),
    "web_search_options": Case({}),
    "prompt_cache_key": Case("k"),
    "prompt_cache_options": Case({"ttl": "1h"}),
    "prompt_cache_retention": Case("24h"),
    "safety_identifier": Case("s-1"),
    "moderation": Case({"mode": "strict"}),
    "top_k": Case(40),  # vendor extensions are refused too
    "repetition_penalty": Case(1.1),
}


def test_the_table_names_every_parameter_of_the_openai_client() -> None:
    from openai.types.chat.completion_create_params import CompletionCreateParamsBase

    assert set(CompletionCreateParamsBase.__annotations__) | {"stream"} <= set(TABLE)


@pytest.mark.parametrize("backend", [pytest.param(b, marks=pytest.mark.slow)
                                     if b == "local" else b for b in EVERY])
@pytest.mark.parametrize("name", sorted(TABLE))
def test_each_parameter_is_honoured_or_refused_by_name(
        client: Any, keys: dict[str, str], mock: Any, backend: str, name: str) -> None:
    case, endpoint = TABLE[name], ENDPOINTS[backend]
    t = T(client, keys["client"], endpoint, backend, mock)
    if backend in case.honoured_by:
        assert case.check is not None
        case.check(t)
        return
    r = t.ask(**{**(case.needs or {}), name: case.value})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] in (name, *(case.needs or ())) and err["code"] == "unsupported_parameter"
    assert err["param"] in err["message"] and repr(endpoint) in err["message"]
    assert mock.state.calls == 0  # refused before any work


@pytest.mark.parametrize("endpoint", ["chat", "mock"])
def test_values_that_ask_for_nothing_are_accepted(
        client: Any, keys: dict[str, str], endpoint: str) -> None:
    off = {"logprobs": False, "tools": [], "top_p": 1, "tool_choice": "none", "stop": None,
           "presence_penalty": 0, "frequency_penalty": 0.0, "response_format": {"type": "text"},
           "parallel_tool_calls": True, "store": False, "service_tier": "auto", "top_k": None,
           "n": 1, "top_logprobs": 0}
    r = client.post("/v1/chat/completions", headers=auth(keys["client"]),
                    json={"model": endpoint, "messages": Q, **off})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(("name", "bad"), [
    ("top_p", 1.5), ("response_format", {"type": "xml"}), ("top_logprobs", 21), ("n", 9),
    ("logprobs", "yes"), ("stop", ["a", "b", "c", "d", "e"]), ("stop", [""])])
def test_bad_values_are_refused_by_name(client: Any, keys: dict[str, str], name: str,
                                        bad: Any) -> None:
    r = client.post("/v1/chat/completions", headers=auth(keys["client"]),
                    json={"model": "mock", "messages": Q, name: bad})
    assert r.status_code == 400, r.text
    assert name in r.text


def test_the_openai_client_gets_the_refusal_as_its_own_error(
        client: Any, keys: dict[str, str]) -> None:
    import openai

    sdk = openai.OpenAI(base_url=str(client.base_url) + "/v1", api_key=keys["client"],
                        http_client=client, max_retries=0)
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(model="chat", messages=Q, top_p=0.2)  # type: ignore[arg-type]
    assert caught.value.param == "top_p" and caught.value.code == "unsupported_parameter"
    out = sdk.chat.completions.create(model="mock", messages=Q,  # type: ignore[arg-type]
                                      logprobs=True, top_logprobs=2)
    assert out.choices[0].logprobs is not None
    assert len(out.choices[0].logprobs.content or []) == 5  # the mock's five words


def test_langchain_stops_where_an_agent_asks(client: Any, keys: dict[str, str]) -> None:
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(base_url=str(client.base_url) + "/v1", api_key=keys["client"],
                     model="mock", http_client=client, max_retries=0)
    full = llm.invoke("hello there").content
    assert isinstance(full, str) and "(" in full
    assert llm.invoke("hello there", stop=["("]).content == full[:full.index("(")]


def test_models_say_what_each_endpoint_honours(client: Any, keys: dict[str, str]) -> None:
    models = {m["id"]: m for m in client.get("/v1/models", headers=auth(keys["client"])
                                             ).json()["data"]}
    for name, endpoint in ENDPOINTS.items():
        listed = set(models[endpoint]["parameters"])
        honoured = {p for p, case in TABLE.items() if name in case.honoured_by}
        assert honoured - {"parallel_tool_calls"} == listed  # that one: without tools, nothing
    assert {"tools", "tool_choice"} <= set(models["tools"]["parameters"])
    doc = client.get("/openapi.json").json()["paths"]["/v1/chat/completions"]["post"]
    assert {name: e["parameters"] for name, e in doc["x-llmops-endpoints"].items()} == {
        name: m["parameters"] for name, m in models.items() if name != "embeddings"}
