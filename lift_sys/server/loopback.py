"""Two small helpers every place that starts a server on loopback needs.

Shared by the split model process, the Modal container (SGLang), the server
benchmark and the tests, so "is it up yet?" is answered one way.
"""

from __future__ import annotations

import socket
import subprocess
import time

import httpx

from lift_sys.errors import EngineError


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, timeout_s: float, proc: subprocess.Popen | None = None, what: str = "server") -> None:
    """Poll ``{url}/health`` until it answers 200; fail early if ``proc`` exits, or after ``timeout_s``."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise EngineError(f"the {what} exited with code {proc.returncode} while starting")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise EngineError(f"the {what} was not healthy after {timeout_s:g} s")
