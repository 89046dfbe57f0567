"""python -m reference_partner: a stand-in for the partner that honours its API.

POST /v1/breakdowns as DESIGN.md fixes it: bearer token (401), JSON body, gzip
allowed, payload checked (400 malformed, 422 invalid, problem+json), 413 when
too large, Idempotency-Key required, the same key with another body 409, the
same key and body the same answer.  The breakdown comes from
reference_partner.disaggregate, which sees only the minute values.

For tests, POST /_faults (same token) makes the next `count` answers fail:
{"mode": "429" | "503" | "500" | "422" | "slow" | "nonsense" | "none", "count": 2,
 "retry_after": 1, "delay": 3, "key": "s-003:"}.  "422" refuses the payload for good
(as the partner does with one it cannot use); "key", if given, limits the fault to
Idempotency-Keys starting with it (one sensor's payloads).
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import hashlib
import io
import json
import logging
import math
import os
import sys
import threading
import time
from typing import Any

from homewatt.config import read_token
from homewatt.httpserver import Handler, Problem, Server, json_object, serve_until_stopped
from reference_partner.disaggregate import breakdown

log = logging.getLogger("reference_partner")

MODEL_VERSION = "homewatt-reference-rules-1"
MAX_BODY = 8 * 1024 * 1024  # bytes after decompression
MAX_VALUES = 50_000  # 30 days are at most 43,260 minutes


class Partner:
    """State of the reference partner: answers by idempotency key, injected faults."""

    def __init__(self, token: str):
        self.token = token
        self.lock = threading.Lock()
        self.answers: dict[str, tuple[str, dict[str, Any]]] = {}  # key -> (body sha256, answer)
        self.fault: dict[str, Any] = {"mode": "none", "count": 0}
        self.requests = 0

    def take_fault(self, key: str) -> dict[str, Any] | None:
        with self.lock:
            self.requests += 1
            if not key.startswith(self.fault.get("key", "")):
                return None
            if self.fault["mode"] != "none" and self.fault["count"] > 0:
                self.fault["count"] -= 1
                return dict(self.fault)
        return None

    def answer(self, key: str, body: bytes) -> dict[str, Any]:
        digest = hashlib.sha256(body).hexdigest()
        with self.lock:
            known = self.answers.get(key)
        if known:
            if known[0] != digest:
                raise Problem(409, "Conflict", f"Idempotency-Key {key!r} was used with another body")
            return known[1]
        payload = parse_payload(body)
        shares, total = breakdown(payload["start"], payload["values"])
        start = dt.datetime.fromisoformat(payload["start"].replace("Z", "+00:00"))
        end = start + dt.timedelta(seconds=60 * len(payload["values"]))
        result = {
            "sensor_id": payload["sensor_id"],
            "start": payload["start"],
            "end": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "total_wh": round(total, 3),
            "model_version": MODEL_VERSION,
            "usages": [{"usage": k, "share": v} for k, v in sorted(shares.items(), key=lambda kv: -kv[1])],
        }
        with self.lock:
            self.answers.setdefault(key, (digest, result))
            return self.answers[key][1]


def parse_payload(body: bytes) -> dict[str, Any]:
    p = json_object(body)
    missing = [k for k in ("sensor_id", "start", "resolution_seconds", "unit", "values") if k not in p]
    if missing:
        raise Problem(422, "Unprocessable Entity", f"missing field(s): {', '.join(missing)}")
    if not isinstance(p["sensor_id"], str) or not p["sensor_id"]:
        raise Problem(422, "Unprocessable Entity", "sensor_id must be a non-empty string")
    try:
        start = dt.datetime.fromisoformat(str(p["start"]).replace("Z", "+00:00"))
    except ValueError as exc:
        raise Problem(422, "Unprocessable Entity", f"start is not ISO 8601: {p['start']!r}") from exc
    if start.tzinfo is None or start.second or start.microsecond:
        raise Problem(422, "Unprocessable Entity", "start must be a minute instant with a UTC offset")
    if p["resolution_seconds"] != 60:
        raise Problem(422, "Unprocessable Entity", "resolution_seconds must be 60")
    if p["unit"] != "Wh":
        raise Problem(422, "Unprocessable Entity", "unit must be 'Wh'")
    values = p["values"]
    if not isinstance(values, list) or not values:
        raise Problem(422, "Unprocessable Entity", "values must be a non-empty list")
    if len(values) > MAX_VALUES:
        raise Problem(413, "Payload Too Large", f"{len(values)} values, at most {MAX_VALUES}")
    for i, v in enumerate(values):
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
            raise Problem(422, "Unprocessable Entity", f"values[{i}] must be a non-negative number or null")
    return p


FAULT_MODES = ("429", "503", "500", "422", "slow", "nonsense", "none")


class PartnerHandler(Handler):
    """The partner's HTTP API; `partner` is set on the subclass that serve() makes."""

    protocol_version = "HTTP/1.1"
    log = log
    access_level = logging.INFO
    partner: Partner

    def do_POST(self) -> None:  # noqa: N802
        try:
            body = self._body()
            self._check_auth()
            if self.path == "/_faults":
                self._set_faults(body)
            elif self.path == "/v1/breakdowns":
                self._breakdown(body)
            else:
                raise Problem(404, "Not Found", f"no resource {self.path}")
        except Problem as p:
            self.reply_problem(p)

    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/healthz":
            with self.partner.lock:  # answered: distinct idempotency keys (a resent key counts once)
                answered = len(self.partner.answers)
            self.reply_json(200, {"ok": True, "requests": self.partner.requests, "answered": answered})
        else:
            self.reply_problem(Problem(404, "Not Found", f"no resource {self.path}"))

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.rfile.read(length)
            raise Problem(413, "Payload Too Large", f"body of {length} bytes, at most {MAX_BODY}")
        raw = self.rfile.read(length)
        if self.headers.get("Content-Encoding", "").lower() == "gzip":
            try:
                with gzip.GzipFile(fileobj=io.BytesIO(raw)) as gz:
                    raw = gz.read(MAX_BODY + 1)
            except OSError as exc:
                raise Problem(400, "Bad Request", f"body is not valid gzip: {exc}") from exc
            if len(raw) > MAX_BODY:
                raise Problem(413, "Payload Too Large", f"body over {MAX_BODY} bytes once decompressed")
        return raw

    def _check_auth(self) -> None:
        if self.headers.get("Authorization", "") != f"Bearer {self.partner.token}":
            raise Problem(401, "Unauthorized", "missing or wrong bearer token")

    def _set_faults(self, body: bytes) -> None:
        try:
            fault = json.loads(body)
        except ValueError as exc:
            raise Problem(400, "Bad Request", f"bad fault spec: {exc}") from exc
        if not isinstance(fault, dict) or fault.get("mode") not in FAULT_MODES:
            raise Problem(400, "Bad Request", f"bad fault spec: mode must be one of {', '.join(FAULT_MODES)}")
        with self.partner.lock:
            self.partner.fault = {"count": 1, "retry_after": 1, "delay": 3, **fault}
        self.reply_json(200, self.partner.fault)

    def _breakdown(self, body: bytes) -> None:
        if not self.headers.get("Content-Type", "").startswith("application/json"):
            raise Problem(400, "Bad Request", "Content-Type must be application/json")
        key = self.headers.get("Idempotency-Key")
        if not key:
            raise Problem(400, "Bad Request", "Idempotency-Key header is required")
        fault = self.partner.take_fault(key)
        if fault and fault["mode"] in ("429", "503"):
            self.reply_problem(
                Problem(int(fault["mode"]), "Slow Down", "injected fault"),
                {"Retry-After": str(fault["retry_after"])},
            )
            return
        if fault and fault["mode"] == "500":
            raise Problem(500, "Internal Server Error", "injected fault")
        if fault and fault["mode"] == "422":
            raise Problem(422, "Unprocessable Entity", "injected fault: this payload is refused for good")
        if fault and fault["mode"] == "slow":
            time.sleep(float(fault["delay"]))
        answer = self.partner.answer(key, body)
        if fault and fault["mode"] == "nonsense":
            answer = {
                **answer,
                "usages": [{"usage": "fridge", "share": 0.7}, {"usage": "other", "share": 0.7}],
            }
        self.reply_json(200, answer)


def serve(token: str, host: str, port: int) -> Server:
    handler = type("BoundPartnerHandler", (PartnerHandler,), {"partner": Partner(token)})
    return Server((host, port), handler)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m reference_partner",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--listen", default="127.0.0.1:8088", help="host:port (default 127.0.0.1:8088)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s partner %(message)s")
    try:
        token = read_token()
    except (RuntimeError, OSError) as exc:
        print(f"reference partner: {exc}", file=sys.stderr)
        return 2
    host, _, port = args.listen.rpartition(":")
    server = serve(token, host or "127.0.0.1", int(port))
    log.info("reference partner on http://%s/v1/breakdowns (pid %d)", args.listen, os.getpid())
    serve_until_stopped(server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
