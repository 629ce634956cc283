"""Between the routes and the model: queue, cancel on disconnect, metrics, options.

Every generating route hands the dispatcher a job (a function of a
:class:`CancelToken` and the time it waited); the dispatcher queues it on
the bounded :class:`GenerationQueue`, watches the client's connection while
it waits, and cancels the job if the client leaves (removed from the queue,
or stopped within a token by the decode loop). The event loop itself never
runs model work, so ``/health`` answers in microseconds during generations.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import Future
from typing import Any, Callable, TypeVar

from fastapi import Request

from lift_sys import errors
from lift_sys.generation.engines.base import CancelToken
from lift_sys.server import schemas as m
from lift_sys.server.metrics import Metrics
from lift_sys.server.queue import GenerationQueue
from lift_sys.service.core import GenerateOptions, GenerationResult, InferenceService
from lift_sys.settings import Settings

log = logging.getLogger("lift_sys.server")
T = TypeVar("T")


class Dispatcher:
    """The one place a route's work meets the queue, the metrics and the service."""

    def __init__(self, service: InferenceService, settings: Settings, *, workers: int | None = None,
                 warm_up: bool = False) -> None:
        self.service = service
        self.settings = settings
        self.metrics = Metrics()
        local = service.is_local  # in-process model (a remote engine only waits on the network)
        # Local: one worker per engine slot (LIFT_SLOTS; the engine batches them); remote: only network waits.
        self.jobs = GenerationQueue(max_waiting=settings.max_queue, workers=workers or service.parallel_generations,
                                    priority=settings.worker_priority if local else "normal")
        self.metrics.bind(queue_depth=lambda: self.jobs.depth, service=service, jobs=self.jobs,
                          batch_stats=getattr(service.engine, "batch_stats", None) if local else None)
        self.model_name: str = service.engine_info().get("model", "")
        self.default_max_tokens = min(settings.max_tokens_default, service.context_length - 1)
        if warm_up:
            self.jobs.submit(lambda _queue_ms: service.warm_up()).add_done_callback(self._report_warm_up)

    @staticmethod
    def _report_warm_up(done: Future) -> None:
        if done.exception() is not None:
            log.warning("prompt warm-up failed (requests still work): %s", done.exception())

    def options(self, max_tokens: int | None, temperature: float, seed: int | None, backend: str | None = None,
                top_p: float = 1.0) -> GenerateOptions:
        """A request's options; an absent ``max_tokens`` is the server default (``LIFT_MAX_TOKENS``).

        The bounds are checked once, by the service (:meth:`GenerateOptions.check`).
        """
        return GenerateOptions(max_tokens=max_tokens or self.default_max_tokens, temperature=temperature,
                               top_p=top_p, seed=seed, grammar_backend=backend)

    def health(self) -> dict[str, Any]:
        return {**self.service.health(), "queue_depth": self.jobs.depth}

    def submit(self, job: Callable[[float], Any]) -> Future:
        """Queue a job that watches no connection (the stream watches its own)."""
        return self.jobs.submit(job)

    async def run(self, request: Request, fn: Callable[[CancelToken, float], T]) -> T:
        """Queue ``fn`` for a worker; cancel it if the client disconnects while waiting."""
        cancel = CancelToken()
        fut = self.jobs.submit(lambda queue_ms: fn(cancel, queue_ms))
        afut = asyncio.wrap_future(fut)
        while True:
            done, _ = await asyncio.wait({afut}, timeout=0.05)
            if done:
                return afut.result()
            if await request.is_disconnected():
                cancel.cancel()
                fut.cancel()
                self.metrics.cancelled.inc()
                raise errors.Cancelled("client disconnected")

    # ------------------------------------------------------------------ response pieces

    def observe(self, result: GenerationResult, queue_ms: float) -> None:
        self.metrics.observe_generation(result, queue_ms)

    def model_of(self, result: GenerationResult) -> str:
        return result.completion.model or self.model_name


def timings(result: GenerationResult, queue_ms: float, t_start: float) -> m.TimingsOut:
    t = result.completion.timings
    return m.TimingsOut(
        queue_ms=round(queue_ms, 3),
        compile_ms=round(t.compile_ms, 3),
        ttft_ms=round(t.ttft_ms, 3),
        decode_ms=round(t.decode_ms, 3),
        total_ms=round((time.perf_counter() - t_start) * 1000, 3),
    )


def usage(result: GenerationResult) -> m.Usage:
    c = result.completion
    return m.Usage(prompt_tokens=c.prompt_tokens, completion_tokens=c.completion_tokens,
                   cached_prompt_tokens=c.cached_prompt_tokens)
