"""python -m alertmanager.receiver: the webhook that Alertmanager's notifications land on.

Why it exists: an alert that reaches no one is not an alert.  Out of the box
homewatt has no mail server or chat to send to, so Alertmanager sends every
notification here, and this receiver keeps it: one JSON line per notification
in DATA/alerts/notifications.jsonl, written, flushed and fsynced before the 200
goes back.  Alertmanager counts a notification as delivered only on a 2xx, so a
receiver killed at any moment loses no notification it acknowledged.  A person
reads them at GET / (a page for a browser), a program at GET /alerts.

Routes:

- POST /webhook, POST /webhook/<route>: an Alertmanager webhook body (version
  "4").  <route> is the receiver's name in alertmanager.yml (critical, warning,
  info; none for the root receiver) and is stored with the notification.
- GET /alerts: {"notifications": [...]}, oldest first.  Filters: alertname=,
  status=firing|resolved, sensor=, route=, since=<unix seconds>.  A
  notification is listed when one of its alerts matches, with the matching
  alerts only.
- GET /healthz: {"notifications": N}.
- GET /: the latest 50 alerts as an HTML table.

Bad input: a body that is not JSON, or not an Alertmanager payload (an object
with an `alerts` list whose items have `status`, `labels` and `annotations`),
gets 400 with an application/problem+json body saying what is wrong, and one
log line; nothing is stored.  A body over 10 MiB gets 413.  Alertmanager does
not retry a 4xx, so a bad body is not sent again.  If the disk write fails, the
answer is 500 and the partial line is cut off again: Alertmanager retries a 5xx.
A line of the file that is not JSON (the receiver was killed mid-write before
it answered) is skipped with a warning when the file is read; the next write
starts on a new line.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import html
import json
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from homewatt.config import hostport
from homewatt.httpserver import Handler, Problem, Server, json_object, serve_until_stopped

log = logging.getLogger("alertmanager.receiver")

MAX_BODY = 10 * 1024 * 1024  # bytes; Alertmanager sends a few KiB per group
PAGE_ALERTS = 50  # alerts on the browser page
ROUTE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
STATUSES = ("firing", "resolved")
FILTERS = ("alertname", "status", "sensor", "route", "since")
# Labels shown in the log line and on the page, after the alert's name, when present.
SHOWN_LABELS = ("severity", "sensor", "source")
# The payload's fields kept with each notification (the rest repeats what these say).
KEPT = ("receiver", "status", "groupLabels", "commonLabels", "alerts", "groupKey", "truncatedAlerts")


def _string_map(value: object, where: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise Problem(400, "Bad Request", f"{where} must be an object of strings")
    return value


def parse_payload(body: bytes) -> dict[str, Any]:
    """The webhook body, checked as far as this receiver relies on it; Problem(400) if not."""
    doc = json_object(body, " (an Alertmanager webhook payload)")
    alerts = doc.get("alerts")
    if not isinstance(alerts, list):
        raise Problem(400, "Bad Request", "body has no `alerts` list: not an Alertmanager webhook payload")
    for i, alert in enumerate(alerts):
        if not isinstance(alert, dict):
            raise Problem(400, "Bad Request", f"alerts[{i}] must be an object")
        missing = [k for k in ("status", "labels", "annotations") if k not in alert]
        if missing:
            raise Problem(400, "Bad Request", f"alerts[{i}] has no {', '.join(missing)}")
        if alert["status"] not in STATUSES:
            raise Problem(400, "Bad Request", f"alerts[{i}].status must be firing or resolved")
        _string_map(alert["labels"], f"alerts[{i}].labels")
        _string_map(alert["annotations"], f"alerts[{i}].annotations")
    for key in ("groupLabels", "commonLabels"):
        if key in doc:
            _string_map(doc[key], key)
    return doc


def describe(alert: dict[str, Any]) -> str:
    """One alert as the log line shows it: `FIRING Name severity=warning sensor=s-007: summary`."""
    labels, notes = alert["labels"], alert["annotations"]
    shown = " ".join(f"{k}={labels[k]}" for k in SHOWN_LABELS if k in labels)
    summary = notes.get("summary") or notes.get("description") or ""
    text = f"{alert['status'].upper()} {labels.get('alertname', '(no alertname)')}"
    return text + (f" {shown}" if shown else "") + (f": {summary}" if summary else "")


class Store:
    """The notifications file: appended to durably, read back whole (it survives restarts).

    A home's alerts make a few notifications a day, so reading the file for each
    GET costs nothing worth a cache.
    """

    def __init__(self, data: Path):
        self.path = data / "alerts" / "notifications.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()
        self._warned: set[int] = set()  # line numbers already reported as corrupt
        self._repair()
        self.count = len(self.read())

    def _repair(self) -> None:
        """End a line cut short by a kill, so the next record starts on a line of its own."""
        with contextlib.suppress(FileNotFoundError), open(self.path, "rb+") as f:
            if f.seek(0, os.SEEK_END) == 0:
                return
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                f.write(b"\n")
                f.flush()
                os.fsync(f.fileno())

    def append(self, record: dict[str, Any]) -> None:
        """Write one line and fsync it; on failure, cut the file back to where it was."""
        line = (json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n").encode()
        with self.lock:
            created = not self.path.exists()
            with open(self.path, "ab") as f:
                size = f.tell()
                try:
                    f.write(line)
                    f.flush()
                    os.fsync(f.fileno())
                except OSError:
                    with contextlib.suppress(OSError):
                        f.truncate(size)
                    raise
            if created:  # the new file's name must survive a crash too
                fd = os.open(self.path.parent, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            self.count += 1

    def read(self) -> list[dict[str, Any]]:
        """Every stored notification, oldest first; lines that are not JSON objects are skipped."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []
        out = []
        for number, line in enumerate(raw.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
                if not isinstance(doc, dict) or not isinstance(doc.get("alerts"), list):
                    raise ValueError("not a stored notification")
            except ValueError as exc:
                if number not in self._warned:
                    self._warned.add(number)
                    log.warning("%s line %d skipped, not a notification (%s)", self.path, number, exc)
                continue
            out.append(doc)
        return out


def parse_filters(query: str) -> dict[str, str]:
    """GET /alerts' query string; Problem(400) on an unknown filter or a bad value."""
    got = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
    unknown = sorted(set(got) - set(FILTERS))
    if unknown:
        raise Problem(400, "Bad Request", f"unknown filter {', '.join(unknown)}; known: {', '.join(FILTERS)}")
    if "status" in got and got["status"] not in STATUSES:
        raise Problem(400, "Bad Request", "status must be firing or resolved")
    if "since" in got:
        try:
            float(got["since"])
        except ValueError:
            raise Problem(400, "Bad Request", "since must be a Unix time in seconds") from None
    return got


def select(notifications: Iterable[dict[str, Any]], filters: dict[str, str]) -> list[dict[str, Any]]:
    """The notifications with at least one alert that matches, each with its matching alerts only."""
    since = float(filters["since"]) if "since" in filters else None
    label_filters = {k: v for k, v in filters.items() if k in ("alertname", "sensor")}
    out = []
    for n in notifications:
        if since is not None and float(n.get("received_at", 0)) < since:
            continue
        if "route" in filters and n.get("route", "") != filters["route"]:
            continue
        alerts = [
            a
            for a in n["alerts"]
            if all(a.get("labels", {}).get(k) == v for k, v in label_filters.items())
            and ("status" not in filters or a.get("status") == filters["status"])
        ]
        if alerts:
            out.append({**n, "alerts": alerts})
    return out


def page(notifications: list[dict[str, Any]]) -> str:
    """The latest PAGE_ALERTS alerts, newest first, as a small HTML page."""
    rows = []
    for n in reversed(notifications):
        when = dt.datetime.fromtimestamp(float(n.get("received_at", 0))).strftime("%Y-%m-%d %H:%M:%S")
        for a in n["alerts"]:
            labels, notes = a.get("labels", {}), a.get("annotations", {})
            cells = [
                when,
                n.get("route") or "(root)",
                a.get("status", ""),
                labels.get("alertname", ""),
                labels.get("severity", ""),
                labels.get("sensor", ""),
                notes.get("summary") or notes.get("description") or "",
            ]
            rows.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
            if len(rows) == PAGE_ALERTS:
                break
        if len(rows) == PAGE_ALERTS:
            break
    head = "".join(
        f"<th>{h}</th>" for h in ("received", "route", "status", "alert", "severity", "sensor", "summary")
    )
    body = "\n".join(rows) if rows else '<tr><td colspan="7">No notification yet.</td></tr>'
    return (
        '<!doctype html>\n<html><head><meta charset="utf-8"><title>homewatt alerts</title>'
        "<style>body{font-family:sans-serif}td,th{padding:2px 8px;text-align:left}</style></head>\n"
        f"<body><h1>homewatt alerts</h1><p>The latest {PAGE_ALERTS} alerts Alertmanager sent, newest "
        'first. As JSON: <a href="/alerts">/alerts</a>.</p>\n'
        f"<table><tr>{head}</tr>\n{body}\n</table></body></html>\n"
    )


class ReceiverHandler(Handler):
    """The receiver's HTTP API; `store` is set on the subclass that serve() makes."""

    log = log
    store: Store

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        path = urlsplit(self.path).path.rstrip("/")
        try:
            if path == "/webhook":
                route = ""
            elif path.startswith("/webhook/") and ROUTE_NAME.fullmatch(path[len("/webhook/") :]):
                route = path[len("/webhook/") :]
            else:
                raise Problem(404, "Not Found", f"no resource {path}: POST to /webhook or /webhook/<route>")
            payload = parse_payload(self._body())
        except Problem as p:
            log.warning("rejected POST %s: %s", self.path, p.detail)
            self._problem(p)
            return
        record = {"received_at": time.time(), "route": route}
        record.update({k: payload.get(k) for k in KEPT})
        try:
            self.store.append(record)
        except OSError as exc:
            log.error("could not store a notification (%s): answering 500, Alertmanager will retry", exc)
            self._problem(Problem(500, "Internal Server Error", f"could not store the notification: {exc}"))
            return
        for alert in payload["alerts"]:
            log.info("%s", describe(alert))
        self.reply_json(200, {"stored": len(payload["alerts"])})

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        url = urlsplit(self.path)
        try:
            if url.path == "/alerts":
                filters = parse_filters(url.query)
                self.reply_json(200, {"notifications": select(self.store.read(), filters)})
            elif url.path == "/healthz":
                self.reply_json(200, {"notifications": self.store.count})
            elif url.path == "/":
                self.reply(200, "text/html; charset=utf-8", page(self.store.read()).encode())
            else:
                raise Problem(404, "Not Found", f"no resource {url.path}: try /, /alerts or /healthz")
        except Problem as p:
            self._problem(p)

    def _body(self) -> bytes:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise Problem(400, "Bad Request", "Content-Length is not a number") from None
        if length > MAX_BODY:
            raise Problem(413, "Payload Too Large", f"body of {length} bytes, at most {MAX_BODY}")
        return self.rfile.read(length)

    def _problem(self, p: Problem) -> None:
        self.reply_problem(p)
        if p.status == 413:  # the body was not read: the connection cannot be reused
            self.close_connection = True


def serve(store: Store, host: str, port: int) -> Server:
    """A receiver storing into `store` (not yet serving: call serve_forever)."""
    handler = type("BoundReceiverHandler", (ReceiverHandler,), {"store": store})
    return Server((host, port), handler)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m alertmanager.receiver",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--listen",
        default=os.environ.get("HOMEWATT_RECEIVER_LISTEN", "127.0.0.1:9095"),
        help="host:port (env HOMEWATT_RECEIVER_LISTEN, default 127.0.0.1:9095)",
    )
    ap.add_argument(
        "--data",
        default=os.environ.get("HOMEWATT_DATA", "./data"),
        help="data directory; notifications go to DATA/alerts/notifications.jsonl (env HOMEWATT_DATA)",
    )
    args = ap.parse_args(argv)
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(asctime)s receiver: %(message)s")
    try:
        host, port = hostport(args.listen)
    except ValueError as exc:
        print(f"receiver: --listen {exc}", file=sys.stderr)
        return 2
    store = Store(Path(args.data))
    server = serve(store, host, port)
    log.info(
        "receiving on http://%s/webhook, storing in %s (%d so far; pid %d)",
        args.listen,
        store.path,
        store.count,
        os.getpid(),
    )
    serve_until_stopped(server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
