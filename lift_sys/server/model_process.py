"""The model in its own process, behind our own OpenAI-compatible server on loopback.

Why: in one process the HTTP event loop shares the GIL (and, on a small
machine, every core) with the decode loop, and /health latency follows the
model's load (measured: p99 161 ms at 20 pollers, 34 ms after tuning
thread priority). Split, the front process only does I/O: it talks to this
child through the same remote engine that reaches SGLang on Modal
(streaming, cancellation by closing the stream), so there is no second
protocol to maintain.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

from lift_sys.errors import EngineError
from lift_sys.server.loopback import free_port, wait_healthy
from lift_sys.settings import Settings


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the front process dies, however it dies
    (uvicorn re-raises SIGTERM after its graceful shutdown, so a ``finally`` is not enough)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except OSError:
        pass


def start_model_process(settings: Settings, timeout_s: float = 300.0) -> tuple[subprocess.Popen, str]:
    """Start ``lift-sys serve --no-split`` on a loopback port; return (process, base URL) once healthy."""
    port = free_port()
    env = dict(os.environ)
    env.pop("LIFT_API_KEY", None)  # loopback-only child; the front enforces the key
    env.update({
        "LIFT_HOST": "127.0.0.1",
        "LIFT_PORT": str(port),
        "LIFT_ENGINE": "local",
        # The front's queue is the one that refuses (429); the child just serializes.
        "LIFT_MAX_QUEUE": str(max(1000, settings.max_queue * 10)),
    })
    env["LIFT_LOG_LEVEL"] = "warning"  # no per-request access log in the child
    log = tempfile.TemporaryFile()  # never a PIPE nobody reads: a full pipe would block the child
    proc = subprocess.Popen(
        [sys.executable, "-m", "lift_sys.cli", "serve", "--no-split"],
        env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, timeout_s, proc, what="model process")
    except EngineError as exc:
        proc.terminate()
        log.seek(0)
        tail = log.read().decode("utf-8", "replace")[-800:].strip()
        raise EngineError(f"{exc.message}: {tail}" if tail else exc.message) from None
    return proc, url
