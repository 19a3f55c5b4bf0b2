"""Tools pass through an endpoint whose chain declares `tools: passthrough` (the openai
backend, against the mock upstream): the tool calls come back in OpenAI's shape, plain and
streamed, and the tool's result goes back to the model; other endpoints refuse tools."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmops.errors import SpecError
from tests.serving.conftest import ROUTES, auth, write_chain

ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
TOOLS = [{"type": "function", "function": {
    "name": "weather", "description": "the weather in a city",
    "parameters": {"type": "object", "properties": {"question": {"type": "string"}}}}}]
CALL = {"id": "call_mock1", "type": "function",
        "function": {"name": "weather", "arguments": json.dumps({"question": "Paris"})}}


def _is_the_call(call: dict[str, Any]) -> bool:
    """The mock upstream's call: the first tool, with the user's turn as its argument."""
    args = json.loads(call["function"]["arguments"])
    return (call["id"], call["type"], call["function"]["name"]) == (
        "call_mock1", "function", "weather") and ASK[0]["content"] in args["question"]


@pytest.fixture
def routes_file(tmp_path: Path) -> Path:
    path = tmp_path / "routes.yaml"
    path.write_text(yaml.safe_dump({**ROUTES, "endpoints": {
        **ROUTES["endpoints"],
        "tools": {"variants": [{"ref": "chain.mocktools@production", "weight": 100}]}}}))
    return path


def _post(client: Any, key: str, **body: Any) -> Any:
    return client.post("/v1/chat/completions", headers=auth(key),
                       json={"model": "tools", "messages": ASK, **body})


def test_tool_calls_come_back_and_the_result_goes_on(
        client: Any, keys: dict[str, str], mock: Any) -> None:
    r = _post(client, keys["client"], tools=TOOLS, tool_choice="auto")
    assert r.status_code == 200, r.text
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    message = choice["message"]
    assert (message["role"], message["content"]) == ("assistant", None)
    assert len(message["tool_calls"]) == 1 and _is_the_call(message["tool_calls"][0])
    sent = mock.state.bodies[-1]
    assert (sent["tools"], sent["tool_choice"]) == (TOOLS, "auto")
    # the client runs the tool and sends its result: the model answers from it
    turns = [*ASK, {"role": "assistant", "content": None, "tool_calls": [CALL]},
             {"role": "tool", "tool_call_id": CALL["id"], "content": "sunny, 21 C"}]
    r = _post(client, keys["client"], messages=turns, tools=TOOLS)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "the tool said sunny, 21 C"
    upstream = mock.state.bodies[-1]["messages"]
    assert upstream[-2]["tool_calls"] == [CALL]
    assert upstream[-1] == {"role": "tool", "content": "sunny, 21 C", "tool_call_id": CALL["id"]}
    assert upstream[0]["role"] == "system"  # the chain's own prompt still leads


def test_tool_calls_stream_in_openais_shape(client: Any, keys: dict[str, str]) -> None:
    calls: dict[int, dict[str, Any]] = {}
    finish = None
    with client.stream("POST", "/v1/chat/completions", headers=auth(keys["client"]),
                       json={"model": "tools", "messages": ASK, "tools": TOOLS,
                             "stream": True}) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if not line.startswith("data: {"):
                continue
            for choice in json.loads(line[6:])["choices"]:
                finish = choice.get("finish_reason") or finish
                for d in choice["delta"].get("tool_calls") or ():
                    call = calls.setdefault(d["index"], {"function": {"arguments": ""}})
                    call.update({k: d[k] for k in ("id", "type") if d.get(k)})
                    call["function"]["name"] = d["function"].get("name") or call[
                        "function"].get("name")
                    call["function"]["arguments"] += d["function"].get("arguments") or ""
    assert finish == "tool_calls" and list(calls) == [0] and _is_the_call(calls[0])


def test_the_openai_client_and_langchain_call_tools_through_the_gateway(
        client: Any, keys: dict[str, str]) -> None:
    import openai
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    sdk = openai.OpenAI(base_url=str(client.base_url) + "/v1", api_key=keys["client"],
                        http_client=client, max_retries=0)
    out = sdk.chat.completions.create(model="tools", messages=ASK, tools=TOOLS)  # type: ignore[arg-type]
    [call] = out.choices[0].message.tool_calls or []
    assert _is_the_call(call.model_dump())
    streamed = sdk.chat.completions.create(model="tools", messages=ASK,  # type: ignore[arg-type]
                                           tools=TOOLS, stream=True)
    names = [d.function.name for chunk in streamed for c in chunk.choices
             for d in (c.delta.tool_calls or ()) if d.function and d.function.name]
    assert names == ["weather"]

    @tool
    def weather(question: str) -> str:
        """the weather in a city"""
        return "sunny"

    llm = ChatOpenAI(base_url=str(client.base_url) + "/v1", api_key=keys["client"],
                     model="tools", http_client=client, max_retries=0).bind_tools([weather])
    msg = llm.invoke(ASK[0]["content"])
    assert [c["name"] for c in msg.tool_calls] == ["weather"]
    assert ASK[0]["content"] in msg.tool_calls[0]["args"]["question"]


@pytest.mark.parametrize("name,value", [("tools", TOOLS), ("tool_choice", "required")])
def test_an_endpoint_whose_chain_does_not_pass_tools_refuses_them(
        client: Any, keys: dict[str, str], mock: Any, name: str, value: Any) -> None:
    r = client.post("/v1/chat/completions", headers=auth(keys["client"]),
                    json={"model": "mock", "messages": ASK, name: value})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert (err["param"], err["code"]) == (name, "unsupported_parameter")
    assert "passthrough" in err["message"]  # the openai backend could: the chain does not
    assert mock.state.calls == 0


def test_passthrough_needs_a_backend_that_honours_tools(tmp_path: Path, home: Path) -> None:
    from llmops.chains.config import load_chain_config

    code = write_chain(tmp_path, "faketools", {"backend": "fake"}, "tools on fake",
                       tools="passthrough")
    with pytest.raises(SpecError, match="tools: passthrough needs a backend that honours"):
        load_chain_config(code)
