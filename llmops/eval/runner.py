"""`llmops eval run`: a registered chain over a dataset, scored with ragas, cached, logged.

Example:
    >>> from llmops.eval import runner
    >>> ev = runner.evaluate("chain.rag_qa@staging", "eval/qa_smoke.jsonl")
    >>> ev.summary["semantic_similarity"]["mean"], ev.failures

The chain answers every item (concurrently for remote backends), each answer
is scored by every metric, and the whole goes to an MLflow run in the `eval`
experiment (parameters, metrics, the per-item table and a chart), to tags of
the evaluated version, and to the evaluations table. Answers and scores are
cached (`results.py`): an unchanged chain, index and item is not run again,
and an unchanged answer is not scored again, so a repeated evaluation makes no
chain and no judge calls.
"""

from __future__ import annotations

import asyncio
import math
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from llmops.config import Settings, get_settings
from llmops.errors import EvalError
from llmops.eval.dataset import Dataset, EvalItem, load_dataset
from llmops.eval.metrics import Metric, Sample, Score, make_metrics
from llmops.eval.results import Results
from llmops.registry import Registry, VersionInfo, get_registry

AREA = "eval"


@dataclass
class ItemResult:
    item: EvalItem
    output: dict[str, Any] | None  # answer, retrieved_ids, contexts, sources, lineage
    error: str | None  # the chain failed on this item
    scores: dict[str, Score] = field(default_factory=dict)
    cached: bool = False

    @property
    def failed_metrics(self) -> list[str]:
        return [m for m, s in self.scores.items() if not s.ok]


@dataclass
class Evaluation:
    """The outcome of one evaluation run."""

    id: str
    model: str
    version: int
    dataset: str
    dataset_version: str
    index_version: str
    metrics: list[str]
    items: list[ItemResult]
    judge: str | None
    chain_calls: int
    metric_calls: int
    seconds: float
    run_id: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.model}/{self.version}"

    @property
    def summary(self) -> dict[str, dict[str, float | int | None]]:
        """Per metric: mean over the items that scored, how many did, how many failed."""
        out: dict[str, dict[str, float | int | None]] = {}
        for m in self.metrics:
            values = [r.scores[m].value for r in self.items if r.scores[m].ok]
            ok = [float(v) for v in values if v is not None]
            out[m] = {"mean": sum(ok) / len(ok) if ok else None, "n": len(ok),
                      "failures": len(self.items) - len(ok)}
        return out

    @property
    def failures(self) -> int:
        """(item, metric) pairs without a value: each counts against a gate."""
        return sum(int(s["failures"] or 0) for s in self.summary.values())

    def table(self) -> pd.DataFrame:
        """One row per item: question, answer, each metric's value and any error."""
        rows = []
        for r in self.items:
            row: dict[str, Any] = {
                "id": r.item.id, "question": r.item.question, "reference": r.item.reference,
                "topics": ", ".join(r.item.topics),
                "answer": (r.output or {}).get("answer"),
                "retrieved": ", ".join((r.output or {}).get("retrieved_ids") or []),
                "chain_error": r.error,
            }
            for m in self.metrics:
                s = r.scores[m]
                row[m] = s.value if s.ok else math.nan
                row[f"{m}_error"] = s.error
            rows.append(row)
        return pd.DataFrame(rows)

    def to_dict(self, *, items: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id, "model": self.model, "version": self.version, "ref": self.ref,
            "dataset": self.dataset, "dataset_version": self.dataset_version,
            "index_version": self.index_version, "metrics": self.summary,
            "failures": self.failures, "judge": self.judge, "run_id": self.run_id,
            "chain_calls": self.chain_calls, "metric_calls": self.metric_calls,
            "seconds": round(self.seconds, 2), "n_items": len(self.items),
        }
        if items:
            out["items"] = [
                {"id": r.item.id, "answer": (r.output or {}).get("answer"), "error": r.error,
                 "scores": {m: s.value for m, s in r.scores.items()},
                 "errors": {m: s.error for m, s in r.scores.items() if not s.ok}}
                for r in self.items]
        return out


def evaluate(
    ref: str,
    dataset: Dataset | Path | str,
    *,
    metrics: list[str] | None = None,
    judge: bool | None = None,
    concurrency: int | None = None,
    registry: Registry | None = None,
    results: Results | None = None,
    settings: Settings | None = None,
    progress: bool = True,
    log: bool = True,
    engine: str = "pandas",
) -> Evaluation:
    """Evaluate a registered chain version (`chain.rag_qa@staging`, `chain.rag_qa/3`).

    `engine`: `pandas` answers the items in this process; `spark` answers them through
    `mlflow.pyfunc.spark_udf` (`llmops.chains.batch`), for datasets worth a cluster;
    the scoring, the cache and the logging are the same."""
    from llmops.chains.api import load as load_chain

    if engine not in ("pandas", "spark"):
        raise EvalError(f"unknown engine {engine!r}; allowed: pandas, spark")
    s = settings or get_settings()
    reg = registry or get_registry()
    data = dataset if isinstance(dataset, Dataset) else load_dataset(dataset)
    chosen = make_metrics(metrics, settings=s, judge=judge)
    info = reg.resolve(ref)
    if not info.name.startswith("chain."):
        raise EvalError(
            f"{info.ref} is not a chain: evaluate a prompt through the chain that uses it "
            f"(`llmops gate {info.name}` does that, or log the chain with --prompt {info.ref})")
    res = results or Results(s.store_url)
    started = time.perf_counter()
    chain = load_chain(info.ref, registry=reg)
    chain_hash = chain.content_hash or info.content_hash or info.ref
    index_version = _index_version(chain)

    # Outputs are cached under the index version that served them; an unchanged index
    # finds them under its current version.
    items = list(data.items)
    cached = res.outputs(chain_hash, index_version, (i.content_hash() for i in items))
    results_by_id = {
        i.id: ItemResult(i, cached[i.content_hash()], None, cached=True)
        for i in items if i.content_hash() in cached
    }
    todo = [i for i in items if i.id not in results_by_id]
    # Concurrent items: requests in flight to a remote backend, rows of one batch locally.
    workers = concurrency or s.eval.concurrency
    answered = (_answer_spark(info.ref, todo, reg, s) if engine == "spark" and todo
                else _answer(chain, todo, workers, progress, info.ref))
    for item, output, error in answered:
        if output is not None:
            served = output["lineage"].get("index_version")
            res.put_output(chain_hash, index_version if served is None else str(served),
                           item.content_hash(), output)
        results_by_id[item.id] = ItemResult(item, output, error)
    ordered = [results_by_id[i.id] for i in items]
    metric_calls = _score(ordered, chosen, res, s.eval.concurrency, progress)

    judge_id = next((m.key.split(":", 1)[1] for m in chosen if m.judge), None)
    ev = Evaluation(
        id=uuid.uuid4().hex, model=info.name, version=info.version, dataset=data.name,
        dataset_version=data.version, index_version=index_version,
        metrics=[m.name for m in chosen], items=ordered, judge=judge_id,
        chain_calls=len(todo), metric_calls=metric_calls,
        seconds=time.perf_counter() - started,
    )
    if log:
        _log(ev, data, info, reg, res)
    return ev


def _index_version(chain: Any) -> str:
    if chain.config.kind != "rag":
        return "none"
    version = chain.index_version()
    if version is None:
        raise EvalError("the vector index was never built: run `llmops index refresh` first")
    return str(version)


def _answer(chain: Any, items: list[EvalItem], workers: int, progress: bool,
            label: str) -> list[tuple[EvalItem, dict[str, Any] | None, str | None]]:
    """Run the chain on each item; a failing item is a result with its error, not a crash."""
    from tqdm.auto import tqdm

    def one(item: EvalItem) -> tuple[EvalItem, dict[str, Any] | None, str | None]:
        try:
            r = chain.invoke(item.question)
        except Exception as exc:  # reported per item
            return item, None, f"{type(exc).__name__}: {str(exc)[:300]}"
        return item, _output(r.answer, r.sources, r.contexts, r.lineage.to_dict()), None

    out: list[tuple[EvalItem, dict[str, Any] | None, str | None]] = []
    if not items:
        return out
    bar = tqdm(total=len(items), desc=f"answer {label}", unit="item", disable=not progress)
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(items)))) as pool:
        for fut in as_completed([pool.submit(one, i) for i in items]):
            out.append(fut.result())
            bar.update()
    bar.close()
    return out


def _answer_spark(ref: str, items: list[EvalItem], reg: Registry, s: Settings,
                  ) -> list[tuple[EvalItem, dict[str, Any] | None, str | None]]:
    """The items answered by the chain version through `spark_udf`, one result each."""
    from llmops.chains.batch import predict

    frame = pd.DataFrame({"question": [i.question for i in items]})
    out = predict(ref, frame, engine="spark", contexts=True, registry=reg, settings=s)
    results: list[tuple[EvalItem, dict[str, Any] | None, str | None]] = []
    for item, row in zip(items, out.to_dict(orient="records"), strict=True):
        if row["error"] is not None:
            results.append((item, None, row["error"]))
            continue
        results.append((item, _output(row["answer"], row["sources"], row["contexts"],
                                      row["lineage"]), None))
    return results


def _output(answer: str, sources: list[dict[str, Any]], contexts: Any,
            lineage: dict[str, Any]) -> dict[str, Any]:
    """What an evaluation keeps of one answer (and caches), whichever engine made it."""
    return {"answer": answer,
            "retrieved_ids": [src.get("doc_id") or src.get("id") for src in sources],
            "contexts": list(contexts), "sources": sources, "lineage": lineage}


def _sample(r: ItemResult) -> Sample:
    o = r.output or {}
    return Sample(
        question=r.item.question, answer=o.get("answer") or "", reference=r.item.reference,
        topics=tuple(r.item.topics), retrieved_ids=tuple(x for x in o.get("retrieved_ids") or []
                                                         if x),
        contexts=tuple(o.get("contexts") or []),
    )


def _score(items: list[ItemResult], metrics: list[Metric], res: Results, concurrency: int,
           progress: bool) -> int:
    """Fill each item's scores, from the cache where it has them; the number computed."""
    from tqdm.auto import tqdm

    samples = {id(r): _sample(r) for r in items if r.output is not None}
    keys = {(id(r), m.name): m.sample_key(samples[id(r)])
            for r in items if r.output is not None for m in metrics}
    cached = res.scores((keys[(id(r), m.name)], m.key)
                        for r in items if r.output is not None for m in metrics)
    todo: list[tuple[ItemResult, Metric]] = []
    for r in items:
        for m in metrics:
            if r.output is None:
                r.scores[m.name] = Score(m.name, None, f"the chain failed: {r.error}")
            elif (keys[(id(r), m.name)], m.key) in cached:
                r.scores[m.name] = Score(m.name, cached[(keys[(id(r), m.name)], m.key)])
            else:
                todo.append((r, m))
    if not todo:
        return 0
    bar = tqdm(total=len(todo), desc="score", unit="score", disable=not progress)

    async def run_all() -> list[Score]:
        gate = asyncio.Semaphore(max(1, concurrency))

        async def one(r: ItemResult, m: Metric) -> Score:
            async with gate:
                score = await m.score(samples[id(r)])
            bar.update()
            return score

        return await asyncio.gather(*(one(r, m) for r, m in todo))

    scores = asyncio.run(run_all())
    bar.close()
    fresh = []
    for (r, m), score in zip(todo, scores, strict=True):
        r.scores[m.name] = score
        if score.ok and score.value is not None:
            fresh.append((keys[(id(r), m.name)], m.key, m.name, score.value))
    res.put_scores(fresh)
    return len(todo)


def _log(ev: Evaluation, data: Dataset, info: VersionInfo, reg: Registry, res: Results) -> None:
    """The MLflow run, the version's tags and the evaluations row."""
    summary = ev.summary
    with reg.run(AREA, f"eval {ev.ref} on {data.name}", tags={
        "llmops.kind": "evaluation", "llmops.eval.model": ev.model,
        "llmops.eval.version": ev.version, "llmops.eval.dataset": data.name,
        "llmops.eval.dataset_version": data.version, "llmops.eval.id": ev.id,
    }) as run:
        values = {f"{m}": float(v["mean"]) for m, v in summary.items() if v["mean"] is not None}
        values.update({f"{m}_failures": float(v["failures"] or 0) for m, v in summary.items()})
        values.update({"failures": float(ev.failures), "chain_calls": float(ev.chain_calls),
                       "metric_calls": float(ev.metric_calls)})
        run.log_batch(params={
            "model": ev.model, "version": str(ev.version), "dataset": data.name,
            "dataset_path": str(data.path or ""), "dataset_version": data.version,
            "index_version": ev.index_version, "n_items": str(len(ev.items)),
            "metrics": ",".join(ev.metrics), "judge": ev.judge or "none",
        }, metrics=values)
        table = ev.table()
        run.log_table(table, "eval_items.json")
        with tempfile.TemporaryDirectory() as tmp:
            png = Path(tmp) / "eval_metrics.png"
            write_chart(ev, png)
            run.log_artifact(png)
        ev.run_id = run.run_id
    prefix = f"eval.{data.name}"
    reg.set_tags(ev.model, ev.version, {
        f"{prefix}.run_id": ev.run_id, f"{prefix}.dataset_version": data.version,
        f"{prefix}.id": ev.id, f"{prefix}.failures": ev.failures,
        **{f"{prefix}.{m}": ("nan" if v["mean"] is None else f"{v['mean']:.4f}")
           for m, v in summary.items()},
    })
    res.add_evaluation({
        "id": ev.id, "created_at": time.time(), "model": ev.model, "version": ev.version,
        "dataset": data.name, "dataset_version": data.version, "index_version": ev.index_version,
        "n_items": len(ev.items), "failures": ev.failures, "summary": summary,
        "judge": ev.judge, "run_id": ev.run_id, "chain_calls": ev.chain_calls,
        "metric_calls": ev.metric_calls,
    })


def write_chart(ev: Evaluation, path: Path) -> None:
    """Each metric's per-item values (dots) and mean (bar); failures named under the bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(4.0, 1.4 * len(ev.metrics) + 1), 3.6), dpi=100)
    summary = ev.summary
    for x, m in enumerate(ev.metrics):
        vals = [float(v) for r in ev.items if (v := r.scores[m].value) is not None]
        mean = summary[m]["mean"]
        ax.bar(x, mean or 0.0, color="#9ecae1", width=0.6)
        ax.scatter([x] * len(vals), vals, s=10, color="#08519c", zorder=3)
        if summary[m]["failures"]:
            ax.text(x, 0.02, f"{summary[m]['failures']} failed", ha="center", color="#a50f15",
                    fontsize=8)
    ax.set_xticks(range(len(ev.metrics)), [m.replace("_", "\n") for m in ev.metrics], fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_title(f"{ev.ref} on {ev.dataset} ({len(ev.items)} items)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
