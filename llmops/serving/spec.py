"""`serving/routes.yaml`: endpoints, their variants and weights, shadow, fallback, limits.

```yaml
rate_limit: {requests_per_s: 20, burst: 40}   # per API key, each gateway process
endpoints:
  rag-qa:
    description: Python questions answered from the docs
    variants:
      - {ref: chain.rag_qa@production, weight: 90}   # name defaults to the alias
      - {ref: chain.rag_qa@staging, weight: 10}
    shadow: null              # a variant name: gets a copy of each request, never answers
    fallback: production      # answers when the assigned variant fails
    limits: {max_tokens: 512, timeout_s: 30, max_concurrency: 32}
    rollout: {candidate: staging, baseline: production}   # see llmops/rollout.py
```
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from llmops.errors import SpecError
from llmops.registry import Ref
from llmops.rollout import RolloutPolicy
from llmops.validation import read_yaml_model

ROUTES_FILE = Path("serving") / "routes.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VariantSpec(_Strict):
    ref: str = Field(description="chain reference by alias or version: chain.rag_qa@production")
    weight: float = Field(ge=0, description="share of traffic, relative to the others; 0: none")
    name: str | None = Field(
        None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$",
        description="the name in headers, rows and metrics (default: the alias, else the version)",
    )

    @model_validator(mode="after")
    def _parse_ref(self) -> VariantSpec:
        try:
            ref = Ref.parse(self.ref, kind="chain")
        except Exception as exc:
            raise ValueError(str(exc)) from None
        self.ref = str(ref)
        if self.name is None:
            self.name = ref.alias or (f"v{ref.version}" if ref.version is not None else "latest")
        return self

    @property
    def label(self) -> str:
        assert self.name is not None
        return self.name


class LimitsSpec(_Strict):
    max_tokens: int = Field(1024, ge=1, description="cap on a request's max_tokens, tokens")
    timeout_s: float = Field(60.0, gt=0, description="an answer slower than this gives 504, s")
    max_concurrency: int = Field(64, ge=1, description="requests at once; more get 503")
    max_concurrency_per_key: int | None = Field(
        None, ge=1, description="requests one key may have in flight here; more get 429 "
        "(default: three quarters of max_concurrency, so one key never holds every slot)")

    @property
    def per_key(self) -> int:
        if self.max_concurrency_per_key is not None:
            return min(self.max_concurrency_per_key, self.max_concurrency)
        return max(1, self.max_concurrency * 3 // 4)


class EndpointSpec(_Strict):
    description: str = ""
    variants: list[VariantSpec] = Field(min_length=1)
    shadow: str | None = Field(None, description="variant name that receives a copy (weight 0)")
    fallback: str | None = Field(None, description="variant name that answers when one fails")
    sticky_header: str = Field("x-llmops-user", description="user id when the body has no user")
    limits: LimitsSpec = Field(default_factory=LimitsSpec)
    rollout: RolloutPolicy | None = Field(
        None, description="votes move traffic to a candidate and promote or roll it back")

    @model_validator(mode="after")
    def _check(self) -> EndpointSpec:
        names = [v.label for v in self.variants]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"variant names given twice: {', '.join(dupes)}; set `name`")
        if not any(v.weight > 0 for v in self.variants):
            raise ValueError("at least one variant needs a weight above 0")
        for key in ("shadow", "fallback"):
            value = getattr(self, key)
            if value is not None and value not in names:
                raise ValueError(f"{key}: {value!r} is not a variant ({', '.join(names)})")
        self.sticky_header = self.sticky_header.lower()
        if self.rollout is not None:
            self._check_rollout(self.rollout, names)
        return self

    def _check_rollout(self, policy: RolloutPolicy, names: list[str]) -> None:
        for key in ("candidate", "baseline"):
            if getattr(policy, key) not in names:
                raise ValueError(f"rollout.{key}: {getattr(policy, key)!r} is not a variant "
                                 f"({', '.join(names)})")
        base = Ref.parse(self.variant(policy.baseline).ref, kind="chain")
        cand = Ref.parse(self.variant(policy.candidate).ref, kind="chain")
        if base.alias is None:
            raise ValueError(f"rollout.baseline: {base} names no alias; promotion moves the "
                             "baseline's alias")
        if base.name != cand.name:
            raise ValueError(f"rollout: baseline {base} and candidate {cand} are different "
                             "chains; promotion moves an alias within one chain")

    def variant(self, name: str) -> VariantSpec:
        return next(v for v in self.variants if v.label == name)


class RateLimitSpec(_Strict):
    requests_per_s: float = Field(20.0, gt=0, description="sustained rate per key, requests/s")
    burst: int = Field(40, ge=1, description="requests a key may send at once, requests")
    auth_failures_per_s: float = Field(
        10.0, gt=0, description="failed authentications per client address, sustained; "
        "past them 429 without a key look-up")
    auth_failure_burst: int = Field(50, ge=1, description="failed authentications at once")


class RoutesSpec(_Strict):
    rate_limit: RateLimitSpec = Field(default_factory=RateLimitSpec)
    endpoints: dict[str, EndpointSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _names(self) -> RoutesSpec:
        import re

        bad = [n for n in self.endpoints if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]*", n)]
        if bad:
            raise ValueError(f"endpoint names: letters, digits, '_', '.', '-': {', '.join(bad)}")
        return self


def load_routes(path: Path | None = None) -> RoutesSpec:
    """Parse and validate the routes file (default: PROJECT/serving/routes.yaml)."""
    if path is None:
        from llmops.config import get_settings

        path = get_settings().project_dir / ROUTES_FILE
    if not path.is_file():
        raise SpecError(f"{path}: no routes file; write one (see llmops/serving/spec.py)")
    return read_yaml_model(path, RoutesSpec)
