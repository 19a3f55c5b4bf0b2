"""Promotion gates: a version reaches `production` only through checks a machine runs.

`eval/gates.yaml` (pure data) names, per registered model, the dataset, the
compliance checks, the gated metrics with their tolerance and first-deployment
baseline, and an optional online criterion. `run_gate` checks a candidate:

1. compliance: description, required tags, signature, lineage tags, and an
   evaluation on the current dataset version;
2. comparison: each gated metric of the candidate against production's on the
   same dataset version (within the tolerance), or against the baseline on a
   first deployment; a missing or NaN metric, or any failed item, fails;
3. online (optional): enough votes for the candidate and P(better) above a threshold.

Pass: `production` moves to the candidate by compare-and-set. Fail: the
candidate is archived with the reasons. Either way the decision goes to the
version's tags and description and to the audit record. A prompt or an
adapter is gated through the chain that uses it: the chain is logged with each
version pinned, and those chain versions are evaluated.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

from llmops.config import Settings, get_settings
from llmops.errors import EvalError, GateError
from llmops.eval.dataset import Dataset, load_dataset
from llmops.eval.decision import PRODUCTION, Check, Decision, act
from llmops.eval.results import Results
from llmops.registry import Registry, VersionInfo, get_registry
from llmops.validation import read_yaml_model

GATES_FILE = Path("eval") / "gates.yaml"
# Tabular models are scored on held-out rows of their feature tables, not on a golden
# dataset; higher is better for each. The area that trains them supplies the scoring:
# `EVALUATORS[kind](name, spec)` gives an `Evaluator`, registered by the command floor
# (`llmops/cli.py`), so this module imports no other area.
TABULAR_METRICS = ("roc_auc", "accuracy")
EVALUATORS: dict[str, Callable[[str, GateSpec], Evaluator]] = {}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Compliance(_Strict):
    description: bool = Field(True, description="the version has a description")
    tags: list[str] = Field(default_factory=list, description="version tags that must be set")
    lineage: list[str] = Field(default_factory=list, description="lineage tags that must be set")
    signature: bool = Field(True, description="the pyfunc model declares a signature")
    evaluation: bool = Field(True, description="evaluated on the current dataset version")


class MetricGate(_Strict):
    baseline: float = Field(ge=0, le=1, description="first deployment: the candidate's minimum")
    tolerance: float = Field(0.0, ge=0, le=1, description="how far below production may it be")


class Online(_Strict):
    min_votes: int = Field(ge=1, description="votes the candidate needs")
    min_prob_better: float = Field(gt=0, lt=1, description="P(candidate better) it needs")


class GateSpec(_Strict):
    dataset: str = Field(description="the golden dataset, relative to the project")
    chain: str | None = Field(None, description="prompts: the chain file that evaluates them")
    compliance: Compliance = Field(default_factory=Compliance)
    metrics: dict[str, MetricGate] = Field(min_length=1)
    online: Online | None = None


class Evaluator(Protocol):
    """Scores versions of a model that has no golden dataset (tabular): each call gives an
    evaluation as `Results.evaluation` shapes one (`id`, `run_id`, `summary`)."""

    name: str  # what was scored on (the pipeline file)
    version: str  # which version of it (the feature table's)

    def __call__(self, version: VersionInfo) -> dict[str, Any]: ...


class GatesFile(_Strict):
    gates: dict[str, GateSpec]

    @model_validator(mode="after")
    def _names(self) -> GatesFile:
        from llmops.eval.metrics import METRICS

        for name, spec in self.gates.items():
            kind = name.split(".", 1)[0]
            if kind not in ("chain", "prompt", "adapter", "tabular") or "." not in name:
                raise ValueError(f"gates.{name}: name a registered model such as chain.rag_qa")
            if kind in ("prompt", "adapter") and not spec.chain:
                raise ValueError(f"gates.{name}.chain: a {kind} is evaluated through a chain; "
                                 "name its file (chains/<name>.py)")
            allowed = TABULAR_METRICS if kind == "tabular" else tuple(METRICS)
            unknown = [m for m in spec.metrics if m not in allowed]
            if unknown:
                raise ValueError(f"gates.{name}.metrics: unknown {', '.join(unknown)}; "
                                 f"known: {', '.join(allowed)}")
        return self


def load_gates(path: Path | None = None, settings: Settings | None = None) -> GatesFile:
    s = settings or get_settings()
    path = path or s.project_dir / GATES_FILE
    if not path.is_file():
        raise GateError(f"{path}: no gates file")
    return read_yaml_model(path, GatesFile, GateError)


def gate_spec(name: str, gates: GatesFile) -> GateSpec:
    if name not in gates.gates:
        raise GateError(f"no gate for {name}; eval/gates.yaml has: {', '.join(gates.gates)}")
    return gates.gates[name]


def run_gate(
    name: str,
    *,
    candidate: str = "staging",
    dry_run: bool = False,
    gates: GatesFile | None = None,
    registry: Registry | None = None,
    results: Results | None = None,
    settings: Settings | None = None,
    evaluate_production: bool = True,
    progress: bool = False,
) -> Decision:
    """Check `name@candidate` (an alias or a version number) and act on the decision."""
    s = settings or get_settings()
    reg = registry or get_registry()
    res = results or Results(s.store_url)
    spec = gate_spec(name, gates or load_gates(settings=s))
    cand = reg.resolve(f"{name}/{candidate}" if candidate.isdigit() else f"{name}@{candidate}")
    if cand.archived:
        raise GateError(f"{cand.ref} is archived; a gate does not reconsider it")
    prod_version = _aliases(reg, name).get(PRODUCTION)
    if prod_version == cand.version:
        raise GateError(f"{cand.ref} is already {name}@{PRODUCTION}; nothing to gate")
    kind = name.split(".", 1)[0]
    if kind in EVALUATORS:  # scored here, on the model's own held-out data
        return _scored_gate(reg, name, cand, prod_version, spec, dry_run)
    data = load_dataset(s.project_dir / spec.dataset)

    evaluated = evaluated_version(reg, name, cand, spec, s)
    cand_eval = _latest_evaluation(res, evaluated, data)
    checks = _compliance(reg, cand, spec, cand_eval, evaluated, data)
    prod_eval = None
    if prod_version is not None:
        prod = reg.get(name, prod_version)
        prod_evaluated = evaluated_version(reg, name, prod, spec, s)
        prod_eval = _latest_evaluation(res, prod_evaluated, data)
        if prod_eval is None and evaluate_production:
            from llmops.eval.runner import evaluate

            ev = evaluate(prod_evaluated.ref, data, metrics=list(spec.metrics), registry=reg,
                          results=res, settings=s, progress=progress)
            prod_eval = res.evaluation(ev.id)
    checks += _comparison(spec, cand_eval, prod_eval, prod_version)
    if spec.online is not None:
        checks.append(_online(spec.online, s, name, evaluated, prod_version, reg, spec))
    decision = Decision(name, cand.version, prod_version, checks, data.name, data.version,
                        cand_eval["run_id"] if cand_eval else None, dry_run=dry_run)
    if not dry_run:
        act(reg, decision, cand)
    return decision


def _scored_gate(reg: Registry, name: str, cand: VersionInfo, prod_version: int | None,
                 spec: GateSpec, dry_run: bool) -> Decision:
    """The gate of a kind that its own area scores (`EVALUATORS`): both versions now."""
    scorer = EVALUATORS[name.split(".", 1)[0]](name, spec)
    scored = scorer(cand)
    checks = _compliance(reg, cand, spec, scored, cand, None)
    baseline = scorer(reg.get(name, prod_version)) if prod_version is not None else None
    checks += _comparison(spec, scored, baseline, prod_version)
    decision = Decision(name, cand.version, prod_version, checks, scorer.name, scorer.version,
                        scored.get("run_id"), dry_run=dry_run)
    if not dry_run:
        act(reg, decision, cand)
    return decision


def evaluated_version(reg: Registry, name: str, version: VersionInfo, spec: GateSpec,
                      settings: Settings) -> VersionInfo:
    """The chain version whose evaluation stands for `version` (itself, for a chain)."""
    if name.startswith("chain."):
        return version
    if name.startswith(("prompt.", "adapter.")):
        from llmops.chains.api import log as log_chain

        assert spec.chain is not None
        pinned = {"prompt" if name.startswith("prompt.") else "adapter": version.ref}
        logged = log_chain(settings.project_dir / spec.chain, registry=reg, **pinned)
        return reg.get(logged.name, logged.version)
    raise GateError(f"{name}: gating {name.split('.')[0]} models needs their evaluation, "
                    "which this llmops does not have yet")


def _aliases(reg: Registry, name: str) -> dict[str, int]:
    return {a: v.version for v in reg.list_versions(name) for a in v.aliases}


def _latest_evaluation(res: Results, version: VersionInfo, data: Dataset) -> dict[str, Any] | None:
    rows = res.evaluations(model=version.name, version=version.version,
                           dataset_version=data.version, limit=1)
    return rows[0] if rows else None


def _compliance(reg: Registry, cand: VersionInfo, spec: GateSpec, ev: dict[str, Any] | None,
                evaluated: VersionInfo, data: Dataset | None) -> list[Check]:
    c = spec.compliance
    checks = []
    if c.description:
        ok = bool(cand.description.strip())
        checks.append(Check("compliance", "description", ok,
                            "present" if ok else "the version has no description"))
    for group, keys in (("tags", c.tags), ("lineage", c.lineage)):
        if keys:
            missing = [k for k in keys if not str(cand.tags.get(k, "")).strip()]
            checks.append(Check("compliance", group, not missing,
                                f"missing {', '.join(missing)}" if missing
                                else f"{len(keys)} present"))
    if c.signature:
        ok = _has_signature(reg, cand)
        checks.append(Check("compliance", "signature", ok,
                            "declared" if ok else "the model declares no signature"))
    if c.evaluation:
        ok = ev is not None
        if ev is not None:
            detail = f"evaluation {ev['id']} (run {ev['run_id']})"
        elif data is not None:
            detail = (f"{evaluated.ref} has no evaluation on {data.name}@{data.version}: run "
                      f"`llmops eval run {evaluated.ref} --dataset {data.path}`")
        else:
            detail = f"{evaluated.ref} could not be scored"
        checks.append(Check("compliance", "evaluation", ok, detail))
    return checks


def _has_signature(reg: Registry, version: VersionInfo) -> bool:
    import yaml

    mlmodel = reg.download(version.name, version.version) / "MLmodel"
    if not mlmodel.is_file():
        return False
    return bool((yaml.safe_load(mlmodel.read_text()) or {}).get("signature"))


def _comparison(spec: GateSpec, cand: dict[str, Any] | None, prod: dict[str, Any] | None,
                prod_version: int | None) -> list[Check]:
    checks = []
    for metric, g in spec.metrics.items():
        got = _metric(cand, metric)
        if got["error"]:
            checks.append(Check("comparison", metric, False, f"candidate {got['error']}"))
            continue
        value = float(got["mean"])
        if prod_version is None:
            ok = value >= g.baseline
            checks.append(Check("comparison", metric, ok,
                                f"{value:.3f} {'>=' if ok else '<'} baseline {g.baseline:.3f}",
                                {"candidate": value, "baseline": g.baseline}))
            continue
        base = _metric(prod, metric)
        if base["error"]:
            checks.append(Check("comparison", metric, False, f"production {base['error']}"))
            continue
        floor = float(base["mean"]) - g.tolerance
        ok = value >= floor
        checks.append(Check(
            "comparison", metric, ok,
            f"{value:.3f} vs production {float(base['mean']):.3f} "
            f"(tolerance {g.tolerance:.3f}: needs >= {floor:.3f})",
            {"candidate": value, "production": float(base["mean"]), "tolerance": g.tolerance}))
    return checks


def _metric(ev: dict[str, Any] | None, metric: str) -> dict[str, Any]:
    """The metric's mean, or why it has none (fail closed: NaN, missing, failed items)."""
    if ev is None:
        return {"error": "has no evaluation on this dataset version"}
    s = (ev.get("summary") or {}).get(metric)
    if s is None:
        return {"error": f"was not evaluated on {metric}"}
    mean = s.get("mean")
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return {"error": f"{metric} is NaN or missing"}
    if s.get("failures"):
        return {"error": f"{metric} failed on {s['failures']} item(s)"}
    return {"error": None, "mean": float(mean)}


def _online(online: Online, settings: Settings, name: str, evaluated: VersionInfo,
            prod_version: int | None, reg: Registry, spec: GateSpec) -> Check:
    if prod_version is None:
        return Check("online", "feedback", True, "skipped: first deployment, nothing to compare")
    from llmops.eval.online import version_comparison
    from llmops.store import Store

    prod_evaluated = evaluated_version(reg, name, reg.get(name, prod_version), spec, settings)
    store = Store.open(settings.store_url)
    try:
        cmp = version_comparison(store, evaluated.name, prod_evaluated.version, evaluated.version)
    except EvalError as exc:
        return Check("online", "feedback", False, str(exc))
    finally:
        store.close()
    ok = cmp.passes(min_votes=online.min_votes, min_prob_better=online.min_prob_better)
    detail = (f"{cmp.candidate.votes} votes (needs {online.min_votes}), P(better) "
              f"{cmp.prob_better:.3f} (needs > {online.min_prob_better})")
    return Check("online", "feedback", ok, detail, cmp.to_dict())
