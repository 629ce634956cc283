"""Prometheus metrics of one server (its own registry, so several apps can live in one process)."""

from __future__ import annotations

from typing import Any, Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST

_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 40, 80, 160)
_KNOWN = {"/health", "/metrics", "/v1/ir", "/v1/code", "/v1/pipeline", "/v1/generate", "/v1/chat/completions", "/v1/models", "/docs", "/openapi.json"}


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("lift_requests_total", "HTTP requests by endpoint and status", ["endpoint", "status"], registry=r)
        self.latency = Histogram("lift_request_seconds", "HTTP request latency", ["endpoint"], buckets=_BUCKETS, registry=r)
        self.queue = Histogram("lift_queue_seconds", "Time waiting for the model", buckets=_BUCKETS, registry=r)
        self.ttft = Histogram("lift_ttft_seconds", "Time to first token (engine)", buckets=_BUCKETS, registry=r)
        self.generation = Histogram("lift_generation_seconds", "Engine time per generation", buckets=_BUCKETS, registry=r)
        self.tokens = Counter("lift_tokens_generated_total", "Completion tokens generated", registry=r)
        self.prompt_tokens = Counter("lift_prompt_tokens_total", "Prompt tokens processed", registry=r)
        self.cancelled = Counter("lift_cancelled_total", "Generations cancelled because the client left", registry=r)
        self.queue_depth = Gauge("lift_queue_depth", "Requests waiting or running", registry=r)
        self.cache_hits = Gauge("lift_grammar_cache_hits", "Compiled-grammar cache hits", registry=r)
        self.cache_misses = Gauge("lift_grammar_cache_misses", "Compiled-grammar cache misses (compiles)", registry=r)

    def bind(self, *, queue_depth: Callable[[], int], service: Any) -> None:
        """Gauges read live values at scrape time."""
        self.queue_depth.set_function(queue_depth)
        self.cache_hits.set_function(lambda: service.cache_stats().hits)
        self.cache_misses.set_function(lambda: service.cache_stats().misses)

    def observe_request(self, path: str, status: int, seconds: float) -> None:
        endpoint = path if path in _KNOWN else "other"
        self.requests.labels(endpoint, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)

    def observe_generation(self, gen: Any, queue_ms: float) -> None:
        c = gen.completion
        self.queue.observe(queue_ms / 1000)
        self.ttft.observe(c.timings.ttft_ms / 1000)
        self.generation.observe(c.timings.total_ms / 1000)
        self.tokens.inc(c.completion_tokens)
        self.prompt_tokens.inc(c.prompt_tokens)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
