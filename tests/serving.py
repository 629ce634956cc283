"""Run a real uvicorn server on loopback in a background thread (test helper)."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

import uvicorn

from lift_sys.server.loopback import free_port, wait_healthy


@contextmanager
def running(asgi_app, *, port: int | None = None, settings=None) -> Iterator[str]:
    """Serve ``asgi_app`` on 127.0.0.1.

    With ``settings``, uvicorn is configured exactly as ``lift-sys serve``
    configures it (read timeouts, header limit, connection cap:
    :func:`lift_sys.server.guard.uvicorn_config`).
    """
    port = port or free_port()
    if settings is None:
        config = uvicorn.Config(asgi_app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    else:
        from lift_sys.server.guard import uvicorn_config

        config = uvicorn_config(asgi_app, settings, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, 30)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)
