"""The bounded generation queue between the event loop and the model.

The event loop never runs model work: requests become jobs on a bounded
queue served by worker threads: one per engine slot for the local engine
(``LIFT_SLOTS``; with more than one, the engine decodes the workers'
requests together in each llama.cpp step, so the workers *are* the slot
scheduler's intake), more for a remote engine, which is only waiting on the
network. A full queue is refused at once -- 429 with Retry-After -- instead
of piling up latency nobody asked for.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from typing import Any, Callable

from lift_sys.errors import Overloaded
from lift_sys.server.priority import set_worker_priority

Job = Callable[[float], Any]
"""A unit of model work; receives the time it waited in the queue (ms)."""


class GenerationQueue:
    def __init__(self, max_waiting: int = 20, workers: int = 1, retry_after_s: int = 2, priority: str = "normal") -> None:
        if priority not in ("auto", "high", "normal", "low", "idle"):
            raise ValueError(f"priority must be auto, high, normal, low or idle, not {priority!r}")
        self.max_waiting = max_waiting
        self.priority = priority
        self.retry_after_s = retry_after_s
        self._q: queue.Queue[tuple[Job, Future, float] | None] = queue.Queue()
        self._lock = threading.Lock()
        self._waiting = 0
        self._running = 0
        self._threads = [
            threading.Thread(target=self._loop, name=f"lift-gen-{i}", daemon=True) for i in range(workers)
        ]
        for t in self._threads:
            t.start()

    @property
    def depth(self) -> int:
        """Jobs waiting + running. Read without blocking on the model."""
        return self._waiting + self._running

    @property
    def waiting(self) -> int:
        """Jobs queued for a worker (not started)."""
        return self._waiting

    @property
    def running(self) -> int:
        """Jobs a worker is running (at most one per worker)."""
        return self._running

    @property
    def workers(self) -> int:
        return len(self._threads)

    def submit(self, job: Job) -> Future:
        with self._lock:
            if self._waiting >= self.max_waiting:
                raise Overloaded(
                    f"{self._waiting} requests are already waiting for the model (limit {self.max_waiting}); retry later",
                    retry_after_s=self.retry_after_s,
                )
            self._waiting += 1
        fut: Future = Future()
        self._q.put((job, fut, time.perf_counter()))
        return fut

    def _loop(self) -> None:
        set_worker_priority(self.priority)  # type: ignore[arg-type]
        while True:
            item = self._q.get()
            if item is None:
                return
            job, fut, t_enq = item
            with self._lock:
                self._waiting -= 1
            if not fut.set_running_or_notify_cancel():
                continue  # the client left while it waited: never started
            with self._lock:
                self._running += 1
            try:
                fut.set_result(job((time.perf_counter() - t_enq) * 1000))
            except BaseException as exc:  # noqa: BLE001 - delivered to the awaiting request
                fut.set_exception(exc)
            finally:
                with self._lock:
                    self._running -= 1

    def close(self) -> None:
        for _ in self._threads:
            self._q.put(None)
