"""JSON mode on the local backend (the real SmolLM2, constrained by llguidance): answers
parse and match their schema, alone and batched beside free-text rows, and LangChain's
`with_structured_output` gets its object back through the gateway."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from pydantic import BaseModel

from llmops.llm import create_llm
from tests.serving.conftest import ROUTES, Server, auth, write_chain

pytestmark = pytest.mark.slow

ASK = [{"role": "user", "content": "Describe a person named Ada who is 36 years old."}]
SCHEMA = {"type": "object", "additionalProperties": False, "required": ["name", "age"],
          "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}}
AS_SCHEMA = {"type": "json_schema", "json_schema": {"name": "person", "schema": SCHEMA}}


class Person(BaseModel):
    name: str
    age: int


def test_local_answers_follow_the_schema_alone_and_batched(home: Path) -> None:
    llm = create_llm({"backend": "local", "max_tokens": 48})
    free = llm.generate(ASK).text
    with pytest.raises(ValueError):
        json.loads(free)  # unconstrained, the model answers in prose
    person = llm.generate(ASK, response_format=AS_SCHEMA)
    data = json.loads(person.text)
    assert set(data) == {"name", "age"} and isinstance(data["name"], str)
    assert isinstance(data["age"], int) and person.finish_reason == "stop"
    assert isinstance(json.loads(llm.generate(ASK, response_format={"type": "json_object"})
                                 .text), dict)
    # constrained and free rows share batches; each keeps its own kind of answer
    asks = [{"response_format": AS_SCHEMA}, {}] * 3
    with ThreadPoolExecutor(len(asks)) as pool:
        outs = list(pool.map(lambda kw: llm.generate(ASK, **kw).text, asks))
    assert outs[0::2] == [person.text] * 3 and outs[1::2] == [free] * 3
    *pieces, last = list(llm.stream(ASK, response_format=AS_SCHEMA))
    assert "".join(pieces) == last.text == person.text  # type: ignore[union-attr]
    with pytest.raises(Exception, match="response_format"):
        llm.generate(ASK, response_format={"type": "json_schema", "json_schema": {}})


def test_langchain_structured_output_through_the_gateway(
        gw_home: Path, make_app: Any, keys: dict[str, str], tmp_path: Path) -> None:
    from langchain_openai import ChatOpenAI

    from llmops import chains

    code = write_chain(tmp_path / "chains", "localchat", {"backend": "local", "max_tokens": 48},
                       "chat on the local model")
    chains.promote("localchat", chains.log(code).version, "production")
    routes = tmp_path / "local.yaml"
    routes.write_text(yaml.safe_dump({**ROUTES, "endpoints": {"local": {
        "variants": [{"ref": "chain.localchat@production", "weight": 100}],
        "limits": {"max_tokens": 160, "timeout_s": 120, "max_concurrency": 4}}}}))
    with Server(make_app(routes=routes)) as s:
        llm = ChatOpenAI(base_url=f"{s.url}/v1", api_key=keys["client"], model="local",
                         max_retries=0, timeout=120)
        person = llm.with_structured_output(Person, method="json_schema").invoke(
            ASK[0]["content"])
        assert isinstance(person, Person) and person.name
        r = httpx.post(f"{s.url}/v1/chat/completions", headers=auth(keys["client"]),
                       timeout=120, json={"model": "local", "messages": ASK, "max_tokens": 160,
                                          "response_format": AS_SCHEMA})
        assert r.status_code == 200, r.text
        choice = r.json()["choices"][0]
        assert choice["finish_reason"] == "stop", choice
        assert set(json.loads(choice["message"]["content"])) == {"name", "age"}
        models = httpx.get(f"{s.url}/v1/models", headers=auth(keys["client"])).json()["data"]
        assert "response_format" in next(m for m in models if m["id"] == "local")["parameters"]
