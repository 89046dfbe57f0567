"""The one HTTP server of homewatt's own processes (the exporter, the reference partner,
the alert receiver, the stack's runner).

They all want the same things from http.server: a thread per request so a slow
client never delays a 1 s scrape, replies with an exact Content-Length, access
logs at a level of their choosing, and a clean stop on SIGINT or SIGTERM.
serve_forever() blocks the thread that would call shutdown(), so both signals
leave it by an exception instead.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Problem(Exception):
    """A request refused, answered as application/problem+json (RFC 7807), as the partner's
    API fixes it and as the alert receiver does too."""

    def __init__(self, status: int, title: str, detail: str):
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail


def json_object(body: bytes, what: str = "") -> dict[str, Any]:
    """The body as a JSON object, or Problem(400) saying why not (`what`: what it should be)."""
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise Problem(400, "Bad Request", f"body is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise Problem(400, "Bad Request", f"body must be a JSON object{what}")
    return doc


class Handler(BaseHTTPRequestHandler):
    """Request handler base: `reply`/`reply_json` and logging to the module's logger."""

    log = logging.getLogger("homewatt.http")
    access_level = logging.DEBUG

    def reply(self, code: int, ctype: str, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def reply_json(
        self, code: int, doc: Any, ctype: str = "application/json", headers: dict[str, str] | None = None
    ) -> None:
        self.reply(code, ctype, json.dumps(doc).encode(), headers)

    def reply_problem(self, p: Problem, headers: dict[str, str] | None = None) -> None:
        doc = {"type": "about:blank", "title": p.title, "status": p.status, "detail": p.detail}
        self.reply_json(p.status, doc, "application/problem+json", headers)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's name
        self.log.log(self.access_level, format, *args)


class Server(ThreadingHTTPServer):
    daemon_threads = True  # a hung client never keeps the process alive


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def serve_until_stopped(server: Server) -> None:
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()
    finally:
        server.server_close()
