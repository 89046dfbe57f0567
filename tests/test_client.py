"""The partner client's retry rules, against a scripted HTTP server (the waits are recorded, not slept)."""

from __future__ import annotations

import gzip
import json
import random
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from partner_job.client import InvalidAnswer, PartnerClient, validate
from partner_job.outbox import Entry

GOOD = {
    "sensor_id": "s-1",
    "start": "x",
    "end": "y",
    "total_wh": 10.0,
    "model_version": "m",
    "usages": [{"usage": "heating", "share": 0.6}, {"usage": "sauna", "share": 0.4}],
}


def entry() -> Entry:
    return Entry("s-1:2026-11-30", "s-1", 0, 60, {"sensor_id": "s-1", "values": [1.0]})


@pytest.fixture
def scripted():
    script: list[tuple[int, dict[str, str], bytes]] = []
    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            seen.append({"headers": dict(self.headers), "body": json.loads(gzip.decompress(body))})
            status, headers, payload = script.pop(0)
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *a):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", script, seen
    server.shutdown()


def client(url: str, waits: list[float], **kw) -> PartnerClient:
    return PartnerClient(
        url, "tok", sleep=waits.append, rng=random.Random(1), base_delay=1.0, max_delay=8.0, **kw
    )


def test_sends_what_the_api_says(scripted):
    url, script, seen = scripted
    script.append((200, {"Content-Type": "application/json"}, json.dumps(GOOD).encode()))
    out = client(url, []).send(entry())
    assert out.status == "delivered" and out.answer is not None
    assert out.answer["shares"] == {
        "heating": 0.6,
        "sauna": 0.4,
    }  # new names accepted
    h = seen[0]["headers"]
    assert h["Authorization"] == "Bearer tok" and h["Idempotency-Key"] == "s-1:2026-11-30"
    assert h["Content-Type"] == "application/json" and h["Content-Encoding"] == "gzip"
    assert seen[0]["body"] == {"sensor_id": "s-1", "values": [1.0]}


def test_429_and_503_wait_exactly_retry_after(scripted):
    url, script, _ = scripted
    script += [
        (429, {"Retry-After": "3"}, b""),
        (503, {"Retry-After": "7"}, b""),
        (200, {}, json.dumps(GOOD).encode()),
    ]
    waits: list[float] = []
    out = client(url, waits).send(entry())
    assert out.status == "delivered" and out.attempts == 3
    assert waits == [3.0, 7.0]


def test_5xx_backs_off_exponentially_capped_with_jitter(scripted):
    url, script, _ = scripted
    script += [(500, {}, b"")] * 6
    waits: list[float] = []
    out = client(url, waits).send(entry())
    assert out.status == "failed" and out.attempts == 6 and "500" in out.detail
    assert len(waits) == 5
    for n, w in enumerate(waits, start=1):
        assert 0 <= w <= min(8.0, 2 ** (n - 1))
    assert len(set(waits)) == 5  # jittered


def test_a_long_retry_after_is_left_for_later(scripted):
    url, script, _ = scripted
    script.append((503, {"Retry-After": "3600"}, b""))
    out = client(url, [], max_retry_after=600).send(entry())
    assert out.status == "failed" and "3600" in out.detail


def test_other_4xx_is_final_with_the_problem_detail(scripted):
    url, script, _ = scripted
    problem = {
        "type": "about:blank",
        "title": "Unprocessable Entity",
        "status": 422,
        "detail": "unit must be 'Wh'",
    }
    script.append((422, {"Content-Type": "application/problem+json"}, json.dumps(problem).encode()))
    waits: list[float] = []
    out = client(url, waits).send(entry())
    assert (out.status, out.http_status, out.detail, waits) == ("rejected", 422, problem, [])


def test_nonsense_is_retried(scripted):
    url, script, _ = scripted
    script += [
        (200, {}, b"<html>oops"),
        (200, {}, json.dumps({**GOOD, "sensor_id": "other"}).encode()),
        (200, {}, json.dumps(GOOD).encode()),
    ]
    waits: list[float] = []
    out = client(url, waits).send(entry())
    assert out.status == "delivered" and out.attempts == 3 and len(waits) == 2


def test_connection_refused_is_retried_then_kept():
    waits: list[float] = []
    out = client("http://127.0.0.1:9", waits, max_attempts=3).send(entry())
    assert out.status == "failed" and "connection failed" in out.detail and len(waits) == 2


@pytest.mark.parametrize(
    ("usages", "why"),
    [
        ([{"usage": "a", "share": 0.5}, {"usage": "b", "share": 0.49}], "add up"),
        ([{"usage": "a", "share": 1.2}, {"usage": "b", "share": -0.2}], "outside"),
        ([{"usage": "A B", "share": 1.0}], "not \\[a-z\\]"),
        ([{"usage": "a", "share": 0.5}, {"usage": "a", "share": 0.5}], "twice"),
        ([{"usage": "a", "share": "1"}], "not a number"),
        ([], "no 'usages'"),
    ],
)
def test_validate_refuses_bad_breakdowns(usages, why):
    with pytest.raises(InvalidAnswer, match=why):
        validate({**GOOD, "usages": usages}, entry())


def test_validate_accepts_rounding_within_a_thousandth():
    ok = validate(
        {**GOOD, "usages": [{"usage": "a", "share": 0.5004}, {"usage": "b", "share": 0.5005}]}, entry()
    )
    assert set(ok["shares"]) == {"a", "b"}
