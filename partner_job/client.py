"""The partner API client (DESIGN.md "Partner API"): send, retry as the partner asks, validate.

429 and 503 are waited out for exactly their Retry-After, by every thread sending
through this client (its Gate), which then lets fewer requests fly; timeouts, connection
errors and other 5xx back off exponentially (capped, with full jitter); an
answer that is not a valid breakdown is retried the same way (the payload is
fine, the partner is not); any other 4xx is final and comes back with the
partner's problem detail.
"""

from __future__ import annotations

import math
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import requests
from requests.adapters import HTTPAdapter

from partner_job.gate import Gate

USAGE_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")


class InvalidAnswer(ValueError):
    pass


class Sendable(Protocol):
    """What is sent: an outbox Entry (payload in memory) or Pending (body read from disk)."""

    key: str
    sensor: str

    def gzip_body(self) -> bytes: ...


def validate(answer: Any, entry: Sendable) -> dict[str, Any]:
    """A breakdown we can show: right sensor, shares in [0, 1] adding up to 1 +- 0.001."""
    if not isinstance(answer, dict):
        raise InvalidAnswer("answer is not a JSON object")
    if answer.get("sensor_id") != entry.sensor:
        raise InvalidAnswer(f"answer is for sensor {answer.get('sensor_id')!r}, not {entry.sensor!r}")
    usages = answer.get("usages")
    if not isinstance(usages, list) or not usages:
        raise InvalidAnswer("answer has no 'usages' list")
    seen: dict[str, float] = {}
    for u in usages:
        if not isinstance(u, dict) or not isinstance(u.get("usage"), str):
            raise InvalidAnswer(f"bad usage entry {u!r}")
        name, share = u["usage"], u.get("share")
        if not USAGE_NAME.fullmatch(name):
            raise InvalidAnswer(f"usage name {name!r} is not [a-z][a-z0-9_]*")
        if name in seen:
            raise InvalidAnswer(f"usage {name!r} appears twice")
        if isinstance(share, bool) or not isinstance(share, int | float) or not math.isfinite(share):
            raise InvalidAnswer(f"share of {name!r} is not a number: {share!r}")
        if not 0.0 <= share <= 1.0:
            raise InvalidAnswer(f"share of {name!r} is outside [0, 1]: {share}")
        seen[name] = float(share)
    total = sum(seen.values())
    if abs(total - 1.0) > 0.001:
        raise InvalidAnswer(f"shares add up to {total:.6f}, not 1 +- 0.001")
    total_wh = answer.get("total_wh")
    if (
        isinstance(total_wh, bool)
        or not isinstance(total_wh, int | float)
        or not math.isfinite(total_wh)
        or total_wh < 0
    ):
        raise InvalidAnswer(f"total_wh is not a non-negative number: {total_wh!r}")
    return {**answer, "shares": seen}


@dataclass
class Outcome:
    status: str  # "delivered", "rejected" (final 4xx) or "failed" (retries exhausted: stays pending)
    attempts: int
    answer: dict[str, Any] | None = None
    http_status: int | None = None
    detail: Any = ""


class PartnerClient:
    def __init__(
        self,
        url: str,
        token: str,
        timeout: float = 30.0,
        max_attempts: int = 6,
        base_delay: float = 1.0,
        max_delay: float = 60.0,
        max_retry_after: float = 600.0,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ):
        self.url = url.rstrip("/") + "/v1/breakdowns"
        self.token = token
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.max_retry_after = max_retry_after
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.gate = Gate()
        self.session = requests.Session()
        self.session.mount(self.url, HTTPAdapter(pool_connections=1, pool_maxsize=64))  # one per sender

    def backoff(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(cap, base x 2^(attempt-1))]."""
        return self.rng.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))

    def send(self, entry: Sendable) -> Outcome:
        headers = {
            "Authorization": f"Bearer {self.token}",
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
            "Idempotency-Key": entry.key,
        }
        body = entry.gzip_body()
        detail: Any = ""
        status: int | None = None
        for attempt in range(1, self.max_attempts + 1):
            try:
                with self.gate.slot():
                    r = self.session.post(self.url, data=body, headers=headers, timeout=self.timeout)
            except requests.Timeout:
                status, detail, delay = None, f"timed out after {self.timeout:.0f} s", self.backoff(attempt)
            except requests.ConnectionError as exc:
                status, detail, delay = None, f"connection failed: {exc}", self.backoff(attempt)
            else:
                status = r.status_code
                if status == 200:
                    try:
                        answer = validate(r.json(), entry)
                    except (InvalidAnswer, ValueError) as exc:
                        detail, delay = f"invalid answer: {exc}", self.backoff(attempt)
                    else:
                        self.gate.landed_one()
                        return Outcome("delivered", attempt, answer, status)
                elif status in (429, 503):
                    detail = f"{status} {r.reason}"
                    delay = _retry_after(r.headers.get("Retry-After")) or self.backoff(attempt)
                    if delay > self.max_retry_after:
                        return Outcome(
                            "failed", attempt, None, status, f"{detail}: Retry-After {delay:.0f} s"
                        )
                    self.gate.hold(delay)
                elif status >= 500:
                    detail, delay = f"{status} {r.reason}", self.backoff(attempt)
                else:
                    return Outcome("rejected", attempt, None, status, _problem(r))
            if attempt < self.max_attempts:
                self.sleep(delay)
        return Outcome("failed", self.max_attempts, None, status, detail)


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP-date: fall back to our own backoff


def _problem(r: requests.Response) -> Any:
    try:
        return r.json()
    except ValueError:
        return r.text[:2000]
