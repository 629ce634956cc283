"""A TCP listener on loopback that records every connection: proof that nothing was fetched.

A schema under test points its ``$ref``/``$schema``/``$id`` at this
listener. A fetch by any library -- whatever its HTTP client, timeouts or
caching -- has to open a connection first, so ``connections == 0`` after the
request is the absence of the side effect itself, not of a log line.
"""

from __future__ import annotations

import socket
import threading


class Canary:
    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]
        self.connections = 0
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, path: str = "schema.json") -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
            conn.close()

    def close(self) -> None:
        self._closed = True
        self._sock.close()
