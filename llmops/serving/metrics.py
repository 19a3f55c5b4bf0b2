"""Prometheus metrics of one gateway: requests, latency, errors, tokens, by endpoint and variant."""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

# Seconds; answers of a chain on a small model take from milliseconds to a minute.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    """The gateway's metrics in their own registry (several apps may live in one process)."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("llmops_requests", "Chat requests answered, by HTTP status",
                                ["endpoint", "variant", "status"], registry=r)
        self.latency = Histogram("llmops_request_latency_seconds", "Chat request latency",
                                 ["endpoint", "variant"], buckets=LATENCY_BUCKETS, registry=r)
        self.errors = Counter("llmops_errors", "Failed chat requests and variant failures",
                              ["endpoint", "variant", "type"], registry=r)
        self.tokens = Counter("llmops_tokens", "Tokens, prompt and completion",
                              ["endpoint", "variant", "kind"], registry=r)
        self.feedback = Counter("llmops_feedback", "Feedback votes", ["rating"], registry=r)
        self.in_flight = Gauge("llmops_in_flight_requests", "Chat requests being answered",
                               registry=r)
        self.log_pending = Gauge("llmops_log_pending_writes", "Log writes not yet committed",
                                 registry=r)
        self.refreshes = Counter("llmops_alias_refreshes", "Alias cache refreshes, by outcome",
                                 ["outcome"], registry=r)

    def observe(self, endpoint: str, variant: str, status: int, seconds: float,
                prompt_tokens: int = 0, completion_tokens: int = 0) -> None:
        self.requests.labels(endpoint, variant, str(status)).inc()
        self.latency.labels(endpoint, variant).observe(seconds)
        if prompt_tokens:
            self.tokens.labels(endpoint, variant, "prompt").inc(prompt_tokens)
        if completion_tokens:
            self.tokens.labels(endpoint, variant, "completion").inc(completion_tokens)

    def render(self) -> bytes:
        return generate_latest(self.registry)
