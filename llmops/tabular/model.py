"""Train, evaluate and register a tabular model: `tabular.<name>` with its lineage.

Training: a scikit-learn pipeline (standard scaling, logistic regression) with a small,
bounded grid search (inverse regularization `C`, 3-fold cross-validation on the
training split). Evaluation: the hold-out split, chosen by a hash of the entity id (no
entity in both splits, and the same entities held out from every gold version).
Registration: an MLflow sklearn model in the registry with
the gold table version, the training set's SHA-256 and the code commit (the registry
adds it) as tags; the same model on the same data registers once.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from llmops.registry import Registry, RunLog, VersionInfo
from llmops.tabular.source import FEATURES
from llmops.tabular.training import TrainingSet

GRID = {"clf__C": [0.1, 1.0, 10.0]}  # bounded: 3 settings x 3 folds


@dataclass(frozen=True)
class Split:
    train: pd.DataFrame
    holdout: pd.DataFrame


def split(ts: TrainingSet, *, holdout: float = 0.25, seed: int = 0) -> Split:
    """Train and hold-out rows, split by entity: an entity is held out when the hash of
    (seed, entity id) falls in the first `holdout` of the range. The same entities are
    held out from every gold version, so a challenger and the champion are compared on
    entities neither trained on."""
    def held(entity: str) -> bool:
        digest = hashlib.sha256(f"{seed}:{entity}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2.0**64 < holdout

    mask = ts.frame["entity_id"].map(held).astype(bool)
    return Split(ts.frame[~mask].reset_index(drop=True), ts.frame[mask].reset_index(drop=True))


def fit(train: pd.DataFrame, *, seed: int = 0, grid: dict[str, list[Any]] | None = None
        ) -> tuple[Any, dict[str, Any]]:
    """The best pipeline of the grid search, and what was searched (params, CV score)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    pipeline = Pipeline([("scale", StandardScaler()),
                         ("clf", LogisticRegression(max_iter=2000, random_state=seed))])
    search = GridSearchCV(pipeline, grid or GRID, scoring="roc_auc",
                          cv=StratifiedKFold(3, shuffle=True, random_state=seed))
    search.fit(train[FEATURES], train["label"].astype(int))
    info = {"best_params": search.best_params_, "cv_roc_auc": float(search.best_score_),
            "searched": len(search.cv_results_["params"])}
    return search.best_estimator_, info


def evaluate(model: Any, holdout: pd.DataFrame) -> dict[str, float]:
    """Hold-out metrics: ROC AUC, accuracy, log loss."""
    from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

    y = holdout["label"].astype(int)
    proba = model.predict_proba(holdout[FEATURES])[:, 1]
    return {"roc_auc": float(roc_auc_score(y, proba)),
            "accuracy": float(accuracy_score(y, (proba >= 0.5).astype(int))),
            "log_loss": float(log_loss(y, proba, labels=[0, 1]))}


def requirements() -> list[str]:
    """What a scikit-learn model of ours needs, pinned to this environment (named, not
    inferred: inference loads the model in a subprocess and picks up whatever else this
    process imported)."""
    from importlib.metadata import version

    return [f"{p}=={version(p)}" for p in ("mlflow", "scikit-learn", "skops", "numpy",
                                            "pandas", "scipy")]


def save(model: Any, model_dir: Path, frame: pd.DataFrame) -> Path:
    """`model` as an MLflow sklearn model in `model_dir` (signature and example from
    the first rows of `frame`)."""
    import mlflow.sklearn
    from mlflow.models import infer_signature

    sample = frame[FEATURES].head(5)
    mlflow.sklearn.save_model(model, str(model_dir),
                              signature=infer_signature(sample, model.predict(sample)),
                              input_example=sample, pip_requirements=requirements())
    return model_dir


def register(reg: Registry, run: RunLog, name: str, model: Any, ts: TrainingSet,
             metrics: dict[str, float], info: dict[str, Any]) -> tuple[VersionInfo, bool]:
    """`tabular.<name>` as an MLflow sklearn model, with its lineage as tags."""
    params = json.dumps(info["best_params"], sort_keys=True)
    content_hash = hashlib.sha256(
        f"{ts.digest}\0{ts.gold_version}\0{params}".encode()).hexdigest()
    tags = {"llmops.kind": "tabular", "lineage.gold_version": ts.gold_version,
            "lineage.data_sha256": ts.digest, "lineage.rows": len(ts.frame),
            "lineage.training_run": run.run_id, "tabular.params": params,
            **{f"tabular.{k}": f"{v:.4f}" for k, v in metrics.items()}}
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = save(model, Path(tmp) / "model", ts.frame)
        return reg.register(f"tabular.{name}", model_dir, content_hash=content_hash, run=run,
                            tags=tags, description=f"{name}: trained on gold version "
                                                   f"{ts.gold_version} ({len(ts.frame)} rows)")
