"""Prometheus metrics of one server (its own registry, so several apps can live in one process)."""

from __future__ import annotations

from typing import Any, Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 40, 80, 160)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
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

        self.running = Gauge("lift_running_requests", "Requests a worker is running (local engine: at most LIFT_SLOTS)", registry=r)
        self.waiting = Gauge("lift_waiting_requests", "Requests queued for a worker or an engine slot", registry=r)

    def bind(self, *, queue_depth: Callable[[], int], service: Any, jobs: Any = None,
             batch_stats: Callable[[], Any] | None = None) -> None:
        """Gauges read live values at scrape time.

        ``jobs``: the :class:`~lift_sys.server.queue.GenerationQueue`
        (running / waiting). ``batch_stats``: the local engine's
        ``batch_stats`` (running and waiting sequences, batch sizes).
        """
        self.queue_depth.set_function(queue_depth)
        self.cache_hits.set_function(lambda: service.cache_stats().hits)
        self.cache_misses.set_function(lambda: service.cache_stats().misses)
        if jobs is not None:
            engine_waiting = (lambda: batch_stats().waiting) if batch_stats is not None else (lambda: 0)
            self.running.set_function(lambda: jobs.running)
            self.waiting.set_function(lambda: jobs.waiting + engine_waiting())
        if batch_stats is not None:
            self.registry.register(_BatchCollector(batch_stats))

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


class _BatchCollector(Collector):
    """The engine's batch-size histogram and slot use, read from its counters at scrape time.

    The decode thread only bumps plain counters (one dict increment per
    step); nothing Prometheus-specific runs inside the batch loop.
    """

    def __init__(self, batch_stats: Callable[[], Any]) -> None:
        self._stats = batch_stats

    def collect(self):  # type: ignore[override]
        s = self._stats()
        sizes = sorted(s.steps_by_size.items())
        buckets = [(str(bound), sum(c for size, c in sizes if size <= bound)) for bound in _BATCH_BUCKETS]
        buckets.append(("+Inf", sum(c for _, c in sizes)))
        hist = HistogramMetricFamily("lift_batch_size", "Sequences per llama.cpp decode step")
        hist.add_metric([], buckets, sum_value=sum(size * c for size, c in sizes))
        yield hist
        for name, doc, value in (
            ("lift_engine_running_sequences", "Sequences in an engine slot (decoding or prefilling)", s.running),
            ("lift_engine_waiting_sequences", "Sequences waiting for a free engine slot", s.waiting),
            ("lift_engine_slots", "Engine slots (LIFT_SLOTS)", s.slots),
        ):
            g = GaugeMetricFamily(name, doc)
            g.add_metric([], value)
            yield g
        tokens = CounterMetricFamily("lift_engine_decoded_tokens", "Tokens through llama_decode (prompt + output)")
        tokens.add_metric([], s.tokens_decoded)
        yield tokens
