"""Feedback over HTTP and the review page; the keys and feedback CLIs; probes and metrics."""

from __future__ import annotations

import json
import re
from pathlib import Path

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from llmops.serving.cli import feedback_app, keys_app
from llmops.store import Store
from tests.serving.conftest import auth

Q = [{"role": "user", "content": "What is a decorator?"}]


def ask(client: TestClient, key: str, endpoint: str = "chat") -> str:
    r = client.post("/v1/chat/completions", headers=auth(key),
                    json={"model": endpoint, "messages": Q})
    assert r.status_code == 200
    return str(r.json()["id"])


def vote(client: TestClient, key: str, rid: str, rating: str, comment: str | None = None) -> dict:  # type: ignore[type-arg]
    r = client.post("/v1/feedback", headers=auth(key),
                    json={"request_id": rid, "rating": rating, "comment": comment})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def test_last_vote_wins_history_kept_and_unknown_id_404(client: TestClient,
                                                        keys: dict[str, str]) -> None:
    rid = ask(client, keys["client"])
    first = vote(client, keys["reviewer"], rid, "up")
    second = vote(client, keys["reviewer"], rid, "down", "wrong")
    assert (first["votes"], second["votes"], second["rating"]) == (1, 2, "down")
    assert first["endpoint"] == second["endpoint"] == "chat"  # the answer voted on
    assert first["variant"] and first["chain"] and first["chain_version"] is not None
    listed_one = client.get("/v1/feedback", headers=auth(keys["reviewer"]),
                            params={"request_id": rid}).json()["data"][0]
    assert {k: listed_one[k] for k in ("endpoint", "variant", "chain", "chain_version")} == {
        k: second[k] for k in ("endpoint", "variant", "chain", "chain_version")}
    vote(client, keys["admin"], rid, "up")
    listed = client.get("/v1/feedback", headers=auth(keys["reviewer"]),
                        params={"request_id": rid}).json()["data"]
    assert sorted((f["reviewer"], f["rating"]) for f in listed) == [
        ("admin-1", "up"), ("reviewer-1", "down")]
    assert [h["rating"] for h in Store.open().feedback_history(rid)] == ["up", "down", "up"]
    r = client.post("/v1/feedback", headers=auth(keys["reviewer"]),
                    json={"request_id": "chatcmpl-nope", "rating": "up"})
    assert r.status_code == 404 and r.json()["error"]["param"] == "request_id"
    bad = client.post("/v1/feedback", headers=auth(keys["reviewer"]),
                      json={"request_id": rid, "rating": "meh"})
    assert bad.status_code == 400


def test_feedback_filters_and_paging(client: TestClient, keys: dict[str, str]) -> None:
    ids = [ask(client, keys["client"]) for _ in range(5)]
    for i, rid in enumerate(ids):
        vote(client, keys["reviewer"], rid, "up" if i % 2 else "down")
    get = lambda **p: client.get("/v1/feedback", headers=auth(keys["reviewer"]),  # noqa: E731
                                 params=p).json()
    assert len(get(rating="down")["data"]) == 3
    assert len(get(endpoint="chat")["data"]) == 5 and get(endpoint="mock")["data"] == []
    page = get(limit=2)
    assert len(page["data"]) == 2 and page["has_more"]
    assert not get(limit=2, offset=4)["has_more"]
    assert get(reviewer="nobody")["data"] == []
    assert client.get("/v1/feedback", headers=auth(keys["reviewer"]),
                      params={"limit": 0}).status_code == 400


def test_review_page_shows_answers_and_the_reviewers_own_votes(client: TestClient,
                                                                keys: dict[str, str]) -> None:
    rid = ask(client, keys["client"])
    page = client.get("/review", headers=auth(keys["reviewer"]))
    assert page.status_code == 200 and "What is a decorator?" in page.text and rid in page.text
    assert "&lt;untrusted" in page.text  # answers are escaped, never markup
    assert "not voted yet" in page.text
    vote(client, keys["reviewer"], rid, "up", "clear enough")
    fb = Store.open().list_feedback(request_id=rid)
    assert [(f["reviewer"], f["rating"], f["comment"]) for f in fb] == [
        ("reviewer-1", "up", "clear enough")]
    again = client.get("/review", headers=auth(keys["reviewer"]), params={"mine": "true"})
    assert rid not in again.text and "Nothing matches these filters." in again.text
    shown = client.get("/review", headers=auth(keys["reviewer"])).text
    assert "your vote: up · with a comment" in shown and "clear enough</textarea>" in shown


def test_keys_cli_creates_lists_and_revokes(gw_home: Path) -> None:
    runner = CliRunner()
    made = runner.invoke(keys_app, ["create", "--role", "reviewer", "--name", "alice", "--json"])
    assert made.exit_code == 0, made.output
    data = json.loads(made.stdout)
    assert data["key"].startswith(f"llmops-{data['id']}-")
    listed = runner.invoke(keys_app, ["list"])
    assert data["id"] in listed.stdout and "alice" in listed.stdout
    assert data["key"] not in listed.stdout
    assert runner.invoke(keys_app, ["revoke", data["id"]]).exit_code == 0
    bad = runner.invoke(keys_app, ["create", "--role", "root", "--name", "x"])
    assert bad.exit_code != 0


def test_feedback_export_jsonl_joins_requests(client: TestClient, keys: dict[str, str],
                                              tmp_path: Path) -> None:
    rid = ask(client, keys["client"])
    vote(client, keys["reviewer"], rid, "down", "missed the point")
    out = tmp_path / "fb.jsonl"
    r = CliRunner().invoke(feedback_app, ["export", "--format", "jsonl", "--output", str(out)])
    assert r.exit_code == 0, r.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 1
    row = lines[0]
    assert (row["request_id"], row["rating"], row["comment"]) == (rid, "down", "missed the point")
    assert row["messages"][-1]["content"] == Q[0]["content"] and row["answer"]
    assert row["lineage"]["chain"] == "chain.chat" and row["reviewer"] == "reviewer-1"
    stdout = CliRunner().invoke(feedback_app, ["export", "--rating", "up"])
    assert stdout.exit_code == 0 and stdout.stdout == ""
    assert CliRunner().invoke(feedback_app, ["export", "--format", "csv"]).exit_code != 0


def test_probes_and_metrics(client: TestClient, keys: dict[str, str]) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["chains_loaded"]
    ask(client, keys["client"])
    text = client.get("/metrics", headers=auth(keys["admin"])).text
    assert 'llmops_requests_total{endpoint="chat"' in text
    assert "llmops_request_latency_seconds_bucket" in text
    assert 'llmops_tokens_total{endpoint="chat"' in text and 'kind="completion"' in text


def test_readyz_reports_a_variant_that_cannot_load(make_app: object, keys: dict[str, str],
                                                   tmp_path: Path) -> None:
    from llmops.serving.spec import RoutesSpec

    spec = RoutesSpec.model_validate({"endpoints": {"e": {"variants": [
        {"ref": "chain.chat@production", "weight": 1},
        {"ref": "chain.chat@nosuchalias", "weight": 1}]}}})
    with TestClient(make_app(routes=spec)) as c:  # type: ignore[operator]
        r = c.get("/readyz")
        assert r.status_code == 503 and "chain.chat@nosuchalias" in r.json()["missing"]
        # the loaded variant still serves; the missing one answers 503, not 500
        codes = {c.post("/v1/chat/completions", headers=auth(keys["client"]),
                        json={"model": "e", "messages": Q, "user": f"u{i}"}).status_code
                 for i in range(12)}
        assert codes == {200, 503}


def test_serve_prints_a_dev_key_only_when_the_profile_asks(
    gw_home: Path, routes_file: Path, monkeypatch: object,
) -> None:
    import uvicorn

    from llmops.config import reset_settings
    from llmops.serving.cli import serve_app

    calls: list[dict] = []  # type: ignore[type-arg]
    mp = monkeypatch  # pytest.MonkeyPatch
    mp.setattr(uvicorn.Server, "run",  # type: ignore[attr-defined]
               lambda self, sockets=None: calls.append({"port": self.config.port}))
    runner = CliRunner()
    quiet = runner.invoke(serve_app, ["--routes", str(routes_file), "--port", "9999"])
    assert quiet.exit_code == 0, quiet.output
    assert "no API keys yet" in quiet.stderr and "dev admin key" not in quiet.stdout
    mp.setenv("LLMOPS_GATEWAY__DEV_KEY", "true")  # type: ignore[attr-defined]
    reset_settings()
    dev = runner.invoke(serve_app, ["--routes", str(routes_file)])
    assert dev.exit_code == 0, dev.output
    key = re.search(r"dev admin key \(shown once\): (\S+)", dev.stdout).group(1)  # type: ignore[union-attr]
    from llmops.serving.keys import hash_key

    found = Store.open().find_key(hash_key(key))
    assert found is not None and found.role == "admin"
    assert [c["port"] for c in calls] == [9999, 8080]
