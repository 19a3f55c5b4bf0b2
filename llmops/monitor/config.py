"""The `monitor:` section of llmops.yaml: windows, drift, alert rules, triggers, webhook.

```yaml
monitor:
  window: 1h                      # s, m, h or d
  similarity_floor: 0.35          # a best chunk under this: the index cannot answer
  drift: {reference_windows: 24, sample: 200, permutations: 200}
  alerts:
    - {name: slow, metric: latency_p95_ms, above: 2000, trigger: reindex}
    - {name: unhappy, metric: thumbs_up_rate, below: 0.6, min_votes: 20, endpoint: rag-qa}
    - {name: topics-moved, metric: query_drift_p, below: 0.01, trigger: reindex}
    - {name: cancer-drift, metric: features_drifted, above: 0, endpoint: tabular.cancer,
       trigger: retrain-cancer}  # from `llmops tabular drift cancer`
  triggers:
    reindex: {action: index-refresh, cooldown: 6h}
    regate: {action: eval-gate, chain: rag_qa, dataset: eval/qa_smoke.jsonl, cooldown: 1d}
    retrain: {action: finetune, recipe: finetune/house_style.yaml, cooldown: 7d}
    retrain-cancer: {action: tabular-retrain, pipeline: cancer, cooldown: 1d}
    page: {action: command, argv: [./notify.sh], cooldown: 1h}
  webhook: {url: https://hooks.example/llmops, secret_env: LLMOPS_WEBHOOK_SECRET}
```
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from llmops.config import CONFIG_FILE, load_config_file
from llmops.errors import ConfigError
from llmops.validation import describe_validation_error

# What an alert may watch: a column of a window row, or one derived from it.
METRICS = ("requests", "errors", "error_rate", "refusal_rate", "empty_rate",
           "latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "prompt_tokens",
           "completion_tokens", "thumbs_up_rate", "votes", "top1_mean", "top1_p10",
           "low_similarity_rate", "answer_chars_mean", "query_drift_p",
           "answer_length_drift_p", "refusal_drift_p",
    "features_drifted", "max_psi", "min_drift_p")
DRIFT_METRICS = ("query_drift_p", "answer_length_drift_p", "refusal_drift_p")
# A tabular pipeline's drift check (`llmops tabular drift`): its endpoint is tabular.<name>
TABULAR_METRICS = ("features_drifted", "max_psi", "min_drift_p")


def row_kind(metric: str) -> str:
    """Which rows answer a metric: `query` (LLM drift), `tabular` (feature drift) or
    `window` (window metrics)."""
    return ("query" if metric in DRIFT_METRICS else
            "tabular" if metric in TABULAR_METRICS else "window")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def seconds(value: Any) -> int:
    """`90`, `"15m"`, `"1h"`, `"7d"` as whole seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value)
    m = _DURATION.match(str(value).strip())
    if not m:
        raise ValueError(f"{value!r} is not a duration (like 90, 15m, 1h, 7d)")
    return int(float(m.group(1)) * _UNIT[m.group(2)])


def _duration(data: Any, key: str) -> Any:
    """`key: 1h` in YAML becomes `key_s: 3600` for the model."""
    if isinstance(data, dict) and key in data:
        data = dict(data)
        data[f"{key}_s"] = seconds(data.pop(key))
    return data


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DriftConfig(_Strict):
    reference_windows: int = Field(24, ge=1, description="windows before the current one")
    sample: int = Field(200, ge=10, le=5000, description="questions per side")
    permutations: int = Field(200, ge=20, le=10_000, description="of the MMD test")
    min_questions: int = Field(30, ge=5, description="per side, else no test")


class AlertRule(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
    metric: Literal[METRICS]  # type: ignore[valid-type]
    above: float | None = None
    below: float | None = None
    endpoint: str | None = Field(None, description="only this endpoint (default: every one)")
    variant: str | None = Field(None, description="only this variant (default: every one)")
    min_requests: int = Field(1, ge=0, description="windows with fewer requests are ignored")
    min_votes: int = Field(0, ge=0, description="for thumbs_up_rate: votes a window needs")
    trigger: str | None = Field(None, description="a trigger to run when the alert opens")

    @model_validator(mode="after")
    def _one_bound(self) -> AlertRule:
        if (self.above is None) == (self.below is None):
            raise ValueError(f"alert {self.name!r}: give exactly one of `above` or `below`")
        return self

    @property
    def threshold(self) -> float:
        value = self.above if self.above is not None else self.below
        assert value is not None
        return value

    def breached(self, value: float) -> bool:
        return value > self.threshold if self.above is not None else value < self.threshold


class TriggerConfig(_Strict):
    action: Literal["index-refresh", "eval-gate", "finetune", "tabular-retrain", "command"]
    cooldown_s: int = Field(3600, ge=0, description="no second run within this time")
    dry_run: bool = Field(False, description="record what would run, run nothing")
    chain: str | None = Field(None, description="eval-gate: the chain to evaluate and gate")
    dataset: str | None = Field(None, description="eval-gate: the golden dataset (the gate's)")
    candidate: str = Field("staging", description="eval-gate: the alias or version to gate")
    recipe: str | None = Field(None, description="finetune: the recipe file")
    pipeline: str | None = Field(None, pattern=r"^[a-z0-9][a-z0-9_\-]{0,63}$",
                                 description="tabular-retrain: the pipeline in tabular/")
    argv: list[str] | None = Field(None, description="command: the program and arguments")
    timeout_s: float = Field(3600, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _cooldown(cls, data: Any) -> Any:
        return _duration(data, "cooldown")

    @model_validator(mode="after")
    def _needs(self) -> TriggerConfig:
        needs = {"eval-gate": ("chain", "dataset"), "finetune": ("recipe",),
                 "tabular-retrain": ("pipeline",), "command": ("argv",)}.get(self.action, ())
        for need in needs:
            if not getattr(self, need):
                raise ValueError(f"action {self.action} needs `{need}`")
        return self


class WebhookConfig(_Strict):
    url: str = Field(pattern=r"^https?://")
    secret_env: str | None = Field(None, description="environment variable of the HMAC key")
    timeout_s: float = Field(5.0, gt=0)


class MonitorConfig(_Strict):
    window_s: int = Field(3600, ge=60, description="window length, seconds")
    similarity_floor: float = Field(0.35, description="best-chunk score under which the "
                                                      "index cannot answer a question")
    refusals: tuple[str, ...] | None = Field(None, description="answer substrings that "
                                                               "decline (default: built in)")
    drift: DriftConfig = Field(default_factory=DriftConfig)
    alerts: tuple[AlertRule, ...] = ()
    triggers: dict[str, TriggerConfig] = Field(default_factory=dict)
    webhook: WebhookConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _window(cls, data: Any) -> Any:
        return _duration(data, "window")

    @field_validator("alerts")
    @classmethod
    def _unique(cls, alerts: tuple[AlertRule, ...]) -> tuple[AlertRule, ...]:
        names = [a.name for a in alerts]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"alert names repeat: {', '.join(sorted(dup))}")
        return alerts

    @model_validator(mode="after")
    def _triggers_exist(self) -> MonitorConfig:
        for a in self.alerts:
            if a.trigger is not None and a.trigger not in self.triggers:
                raise ValueError(f"alert {a.name!r} names trigger {a.trigger!r}, which "
                                 f"`triggers` lacks (has: {', '.join(self.triggers) or 'none'})")
        return self

    @classmethod
    def from_raw(cls, raw: Any, where: str = "monitor") -> MonitorConfig:
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: expected a mapping")
        try:
            return cls.model_validate(raw)
        except (ValidationError, ValueError) as exc:
            text = (describe_validation_error(exc, cls) if isinstance(exc, ValidationError)
                    else str(exc))
            raise ConfigError(f"{where}: {text}") from None


def load_monitor_config(project_dir: Path) -> MonitorConfig:
    path = project_dir / CONFIG_FILE
    return MonitorConfig.from_raw(load_config_file(project_dir).monitor,
                                  where=f"{path}: monitor")
