"""`llmops trace REQUEST_ID`: the lineage of one answer, from the request log and the registry.

request id -> endpoint, variant, chain version -> prompt version -> index
version and retrieved chunk ids -> base model and adapter -> reviewers' votes.
The request row and its votes come through the store's read methods; the
row's lineage is parsed into a `Lineage`; each version's aliases, gate
decision and archive state come from the registry.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import typer

from llmops.errors import LlmopsError, NotFoundError
from llmops.lineage import Lineage

REQUEST_KEYS = ("id", "created_at", "endpoint", "variant", "user", "key_id", "status", "error",
                "latency_ms", "prompt_tokens", "completion_tokens", "shadow_of")


def trace(request_id: str) -> dict[str, Any]:
    """The lineage of one logged request: request, chain, prompt, index, model, feedback.

    Raises:
        LlmopsError: the request log has no such request.
    """
    from llmops.store import Store

    store = Store.open()
    try:
        row = store.get_request(request_id)
        if row is None:
            raise LlmopsError(f"no request {request_id!r} in the request log")
        votes = store.feedback_history(request_id)
    finally:
        store.close()
    raw = row.get("lineage")
    lin = raw if isinstance(raw, Lineage) else Lineage.from_dict(raw)
    return {
        "request": {k: row.get(k) for k in REQUEST_KEYS},
        "chain": _version_facts(row.get("chain") or lin.chain,
                                row.get("chain_version") or lin.chain_version),
        "prompt": _version_facts(lin.prompt, lin.prompt_version or row.get("prompt_version")),
        "index": {"collection": lin.index_collection,
                  "version": lin.index_version or row.get("index_version"),
                  "chunks": list(lin.chunk_ids)
                  or [s.get("id") for s in row.get("sources") or []]},
        "model": {"backend": lin.backend, "base_model": lin.base_model,
                  "adapter": lin.adapter_ref},
        "feedback": votes,
    }


def _version_facts(name: Any, version: Any) -> dict[str, Any] | None:
    """A registered version's ref, aliases, gate decision and archive state, from the registry."""
    if not name or version is None:
        return None
    from llmops.registry import TAG_COMMIT, get_registry

    ref = f"{name}/{version}"
    try:
        info = get_registry().get(str(name), int(version))
    except NotFoundError:
        return {"ref": ref, "missing": "not in this registry"}
    return {"ref": ref, "aliases": ", ".join(info.aliases), "gate": info.tags.get("gate.decision"),
            "archived": info.archived, "git_commit": info.tags.get(TAG_COMMIT)}


def format_trace(out: dict[str, Any]) -> list[str]:
    """The lines `llmops trace` prints for `trace()`'s result."""
    r, idx, m = out["request"], out["index"], out["model"]
    lines = [f"request {r['id']} at {_when(r['created_at'])}: status {r['status']}"
             + (f" ({r['error']})" if r["error"] else "")
             + (f", {r['latency_ms']:.0f} ms" if r["latency_ms"] is not None else ""),
             f"  endpoint {r['endpoint']}, variant {r['variant']}, key {r['key_id']}, "
             f"user {r['user']}" + (f", shadow of {r['shadow_of']}" if r["shadow_of"] else "")]
    for label in ("chain", "prompt"):
        facts = out[label]
        if facts:
            extra = "".join(f", {k} {facts[k]}" for k in ("aliases", "gate", "archived")
                            if facts.get(k))
            lines.append(f"  {label:6} {facts['ref']}{extra}")
    lines.append(f"  index  {idx['collection']} v{idx['version']}: "
                 f"{', '.join(map(str, idx['chunks'])) or 'no chunks'}")
    lines.append(f"  model  {m['base_model']} ({m['backend']}), adapter {m['adapter'] or 'none'}")
    for v in out["feedback"]:
        lines.append(f"  vote   {v['rating']} by {v['reviewer']} at {_when(v['created_at'])}"
                     + (f": {v['comment']}" if v.get("comment") else ""))
    return lines


def _when(epoch: Any) -> str:
    return datetime.fromtimestamp(float(epoch)).isoformat(timespec="seconds")


def trace_cmd(
    request_id: str = typer.Argument(..., help="the `id` of a gateway response"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """The lineage of one answer: endpoint, variant, chain, prompt, index, model, votes."""
    out = trace(request_id)
    if as_json:
        typer.echo(json.dumps(out, indent=2, default=str))
        return
    for line in format_trace(out):
        typer.echo(line)
