"""Every chat-completion parameter is honoured or refused by name (400), on the fake and
the openai backend (against the mock upstream): never accepted and silently ignored."""

from __future__ import annotations

import json
from typing import Any

import pytest

from llmops.serving.schemas import UNHONOURED
from tests.serving.conftest import auth

Q = [{"role": "user", "content": "hello there"}]

# Values that ask for something the gateway does not do yet: each must be refused.
ASKING: dict[str, Any] = {
    "logit_bias": {"50256": -100}, "logprobs": True, "top_logprobs": 2,
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
    "tool_choice": "required", "parallel_tool_calls": "yes",
    "functions": [{"name": "f", "parameters": {}}], "function_call": {"name": "f"},
    "modalities": ["text", "audio"], "store": True, "service_tier": "flex",
    "top_k": 40, "repetition_penalty": 1.1,  # vendor extensions: refused too
}


def test_the_table_covers_every_parameter_not_honoured() -> None:
    assert set(UNHONOURED) <= set(ASKING)


@pytest.mark.parametrize("endpoint", ["chat", "mock"])
@pytest.mark.parametrize("name", sorted(ASKING))
def test_a_parameter_not_honoured_is_refused_by_name(
        client: Any, keys: dict[str, str], mock: Any, endpoint: str, name: str) -> None:
    r = client.post("/v1/chat/completions", headers=auth(keys["client"]),
                    json={"model": endpoint, "messages": Q, name: ASKING[name]})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert (err["param"], err["code"]) == (name, "unsupported_parameter")
    assert name in err["message"] and repr(endpoint) in err["message"]
    assert mock.state.calls == 0  # refused before any work


@pytest.mark.parametrize("endpoint", ["chat", "mock"])
def test_values_that_ask_for_nothing_are_accepted(
        client: Any, keys: dict[str, str], endpoint: str) -> None:
    off = {"logprobs": False, "tools": [], "top_p": 1, "tool_choice": "none", "stop": None,
           "presence_penalty": 0, "frequency_penalty": 0.0, "response_format": {"type": "text"},
           "parallel_tool_calls": True, "store": False, "service_tier": "auto", "top_k": None}
    r = client.post("/v1/chat/completions", headers=auth(keys["client"]),
                    json={"model": endpoint, "messages": Q, **off})
    assert r.status_code == 200, r.text


def test_sampling_is_honoured_by_backends_that_have_it_and_refused_by_the_others(
        client: Any, keys: dict[str, str], mock: Any) -> None:
    asked = {"top_p": 0.5, "presence_penalty": 0.5, "frequency_penalty": -0.5,
             "response_format": {"type": "json_object"}}
    _chat(client, keys["client"], "mock", **asked)
    assert {k: mock.state.bodies[-1][k] for k in asked} == asked  # the openai backend's
    for name, value in asked.items():  # the fake backend has no sampling
        r = client.post("/v1/chat/completions", headers=auth(keys["client"]),
                        json={"model": "chat", "messages": Q, name: value})
        assert r.status_code == 400, r.text
        err = r.json()["error"]
        assert (err["param"], err["code"]) == (name, "unsupported_parameter")
        assert "fake backend does not honour it" in err["message"]
    for name, bad in (("top_p", 1.5), ("response_format", {"type": "xml"})):
        r = client.post("/v1/chat/completions", headers=auth(keys["client"]),
                        json={"model": "mock", "messages": Q, name: bad})
        assert r.status_code == 400 and r.json()["error"]["param"] == name, r.text


def test_honoured_parameters_reach_the_upstream(
        client: Any, keys: dict[str, str], mock: Any) -> None:
    r = client.post("/v1/chat/completions", headers=auth(keys["client"]),
                    json={"model": "mock", "messages": Q, "seed": 7, "temperature": 0.3,
                          "max_completion_tokens": 9, "user": "u-1"})
    assert r.status_code == 200, r.text
    sent = mock.state.bodies[-1]
    assert (sent["seed"], sent["temperature"], sent["max_tokens"]) == (7, 0.3, 9)
    for n, status in ((1, 200), (2, 400)):
        r = client.post("/v1/chat/completions", headers=auth(keys["client"]),
                        json={"model": "mock", "messages": Q, "n": n})
        assert r.status_code == status, r.text
    assert "n" in r.json()["error"]["message"]


def test_the_openai_client_gets_the_refusal_as_its_own_error(
        client: Any, keys: dict[str, str]) -> None:
    import openai

    sdk = openai.OpenAI(base_url=str(client.base_url) + "/v1", api_key=keys["client"],
                        http_client=client, max_retries=0)
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(model="chat", messages=Q, top_p=0.2)  # type: ignore[arg-type]
    assert caught.value.param == "top_p" and caught.value.code == "unsupported_parameter"


def _chat(client: Any, key: str, endpoint: str, **params: Any) -> dict[str, Any]:
    r = client.post("/v1/chat/completions", headers=auth(key),
                    json={"model": endpoint, "messages": Q, **params})
    assert r.status_code == 200, r.text
    return dict(r.json())


def _streamed(client: Any, key: str, endpoint: str, **params: Any) -> tuple[str, str | None]:
    text, finish = "", None
    with client.stream("POST", "/v1/chat/completions", headers=auth(key),
                       json={"model": endpoint, "messages": Q, "stream": True, **params}) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("data: {"):
                choice = json.loads(line[6:])["choices"]
                if choice:
                    text += choice[0]["delta"].get("content") or ""
                    finish = choice[0].get("finish_reason") or finish
    return text, finish


@pytest.mark.parametrize("endpoint", ["chat", "mock"])
def test_stop_ends_answers_and_streams_before_the_stop(
        client: Any, keys: dict[str, str], mock: Any, endpoint: str) -> None:
    key = keys["client"]
    full = _chat(client, key, endpoint)["choices"][0]["message"]["content"]
    words = full.split(" ")
    stop = words[1][-1] + " " + words[2][:2]  # spans two streamed pieces (one a word)
    expected = full[:full.index(stop)]
    body = _chat(client, key, endpoint, stop=[stop, "never in it"])
    choice = body["choices"][0]
    assert (choice["message"]["content"], choice["finish_reason"]) == (expected, "stop")
    assert _streamed(client, key, endpoint, stop=stop) == (expected, "stop")
    if endpoint == "mock":  # passed to the upstream too
        assert mock.state.bodies[-1]["stop"] == [stop]
    for bad, why in ((["a", "b", "c", "d", "e"], "at most 4"), ([""], "non-empty")):
        r = client.post("/v1/chat/completions", headers=auth(key),
                        json={"model": endpoint, "messages": Q, "stop": bad})
        assert r.status_code == 400 and why in r.text and "stop" in r.text


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
    assert {"seed", "stop", "top_p", "frequency_penalty"} <= set(models["mock"]["parameters"])
    assert "stop" in models["chat"]["parameters"]  # the fake backend: stop, no sampling
    assert "top_p" not in models["chat"]["parameters"]
    assert not set(UNHONOURED) & set(models["mock"]["parameters"])
