"""Run an HTTP server in the main thread until SIGINT or SIGTERM, then close it.

serve_forever() blocks the thread that would call shutdown(), so both signals
leave it by an exception instead; the exporter and the reference partner share this.
"""

from __future__ import annotations

import contextlib
import signal
from http.server import HTTPServer


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def serve_until_stopped(server: HTTPServer) -> None:
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()
    finally:
        server.server_close()
