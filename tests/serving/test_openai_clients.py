"""The gateway under uvicorn on loopback, spoken to by the official openai client and LangChain."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from llmops.store import Store
from tests.serving.conftest import Server, auth

Q = [{"role": "user", "content": "What does the with statement do?"}]


@pytest.fixture
def server(make_app: Any, keys: dict[str, str]) -> Iterator[Server]:
    with Server(make_app()) as s:
        yield s


@pytest.fixture
def oai(server: Server, keys: dict[str, str]) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=keys["client"], max_retries=0)


def test_plain_completion_with_the_openai_client(server: Server, oai: openai.OpenAI) -> None:
    raw = oai.chat.completions.with_raw_response.create(
        model="chat", messages=Q, user="alice", max_tokens=20)  # type: ignore[arg-type]
    resp = raw.parse()
    assert resp.choices[0].message.content.startswith("fake answer")  # type: ignore[union-attr]
    assert resp.id.startswith("chatcmpl-") and resp.model == "chat"
    assert raw.headers["x-llmops-variant"] in ("production", "staging")
    assert raw.headers["x-request-id"] == resp.id
    extra = resp.model_extra or {}
    assert extra["sources"] == [] and extra["variant"] == raw.headers["x-llmops-variant"]
    row = Store.open().get_request(resp.id)
    assert row is not None and row["status"] == 200 and row["user"] == "alice"
    assert row["lineage"]["prompt"] == "prompt.assistant" and row["chain"] == "chain.chat"


def test_streaming_with_the_openai_client(server: Server, oai: openai.OpenAI) -> None:
    stream = oai.chat.completions.create(model="chat", messages=Q, stream=True,  # type: ignore[arg-type]
                                         stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("fake answer")
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    rid = chunks[0].id
    assert all(c.id == rid for c in chunks)
    row = Store.open().get_request(rid)
    assert row is not None and row["status"] == 200 and row["answer"] == text and row["stream"]


def test_stream_ends_with_done_on_the_wire(server: Server, keys: dict[str, str]) -> None:
    with httpx.stream("POST", f"{server.url}/v1/chat/completions", headers=auth(keys["client"]),
                      json={"model": "mock", "messages": Q, "stream": True}) as r:
        lines = [line for line in r.iter_lines() if line]
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    assert lines[-1] == "data: [DONE]"


def test_unknown_model_raises_not_found(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        oai.chat.completions.create(model="nope", messages=Q)  # type: ignore[arg-type]
    assert err.value.code == "model_not_found" and "chat" in err.value.message


def test_models_lists_the_endpoints_and_the_embedding_model(oai: openai.OpenAI) -> None:
    assert {m.id for m in oai.models.list()} == {"chat", "shadowed", "mock", "flaky",
                                                 "embeddings"}
    assert oai.models.retrieve("chat").id == "chat"
    assert oai.models.retrieve("embeddings").id == "embeddings"


@pytest.mark.parametrize(("kwargs", "error"), [
    ({"api_key": "wrong"}, openai.AuthenticationError),
])
def test_client_errors_map_to_openai_exceptions(
    server: Server, kwargs: dict[str, Any], error: type[Exception]
) -> None:
    client = openai.OpenAI(base_url=f"{server.url}/v1", max_retries=0, **kwargs)
    with pytest.raises(error):
        client.chat.completions.create(model="chat", messages=Q)  # type: ignore[arg-type]


def test_over_cap_and_reviewer_key_with_the_openai_client(
    server: Server, oai: openai.OpenAI, keys: dict[str, str]
) -> None:
    with pytest.raises(openai.UnprocessableEntityError, match="cap of endpoint 'chat': 64"):
        oai.chat.completions.create(model="chat", messages=Q, max_tokens=65)  # type: ignore[arg-type]
    reviewer = openai.OpenAI(base_url=f"{server.url}/v1", api_key=keys["reviewer"], max_retries=0)
    with pytest.raises(openai.PermissionDeniedError):
        reviewer.chat.completions.create(model="chat", messages=Q)  # type: ignore[arg-type]


def test_langchain_chat_openai_invoke_and_stream(server: Server, keys: dict[str, str]) -> None:
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(model="mock", base_url=f"{server.url}/v1", api_key=keys["client"],  # type: ignore[arg-type]
                     max_retries=0, temperature=0)
    msg = llm.invoke("What is a generator?")
    assert str(msg.content).startswith("mock answer (")
    streamed = "".join(str(c.content) for c in llm.stream("What is a generator?"))
    assert streamed == msg.content


def test_feedback_round_trip_over_http(server: Server, oai: openai.OpenAI,
                                       keys: dict[str, str]) -> None:
    rid = oai.chat.completions.create(model="chat", messages=Q).id  # type: ignore[arg-type]
    r = httpx.post(f"{server.url}/v1/feedback", headers=auth(keys["reviewer"]),
                   json={"request_id": rid, "rating": "down", "comment": "too short"})
    assert r.status_code == 200 and r.json()["reviewer"] == "reviewer-1"
    listed = httpx.get(f"{server.url}/v1/feedback", headers=auth(keys["reviewer"]),
                       params={"request_id": rid}).json()["data"]
    assert [(f["rating"], f["comment"], f["endpoint"]) for f in listed] == [
        ("down", "too short", "chat")]
