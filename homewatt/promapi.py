"""Minimal client for Prometheus's HTTP query API, shared by jobs, runner and tests."""

from __future__ import annotations

from typing import Any

import requests

# What every reader of history asks Thanos Query for: the two block streams merged, and an
# error rather than a partial answer when a store is down (Prometheus ignores both).
HISTORY = {"dedup": "true", "partial_response": "false"}


class PromError(RuntimeError):
    pass


def _get(base: str, path: str, params: dict[str, Any], timeout: float) -> Any:
    try:
        r = requests.get(f"{base}{path}", params=params, timeout=timeout)
    except requests.RequestException as exc:
        raise PromError(f"Prometheus at {base} unreachable: {exc}") from exc
    try:
        body = r.json()
    except ValueError as exc:
        raise PromError(f"{r.status_code} from {base}{path}: {r.text[:200]}") from exc
    if body.get("status") != "success":
        raise PromError(f"{base}{path} {params}: {body.get('errorType')}: {body.get('error')}")
    return body["data"]


def query(
    base: str, expr: str, at: float | None = None, timeout: float = 30, extra: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """Instant query; returns the result vector (each item: metric labels and [ts, "value"]).

    `extra`: more URL parameters, e.g. Thanos Query's max_source_resolution.
    """
    params: dict[str, Any] = {"query": expr, **(extra or {})}
    if at is not None:
        params["time"] = at
    data = _get(base, "/api/v1/query", params, timeout)
    if data["resultType"] == "scalar":
        return [{"metric": {}, "value": data["result"]}]
    return list(data["result"])


def query_range(
    base: str,
    expr: str,
    start: float,
    end: float,
    step: float,
    timeout: float = 60,
    extra: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    params = {"query": expr, "start": start, "end": end, "step": step, **(extra or {})}
    data = _get(base, "/api/v1/query_range", params, timeout)
    return list(data["result"])


def by_label(result: list[dict[str, Any]], label: str = "sensor") -> dict[str, float]:
    """{label value: sample value} for an instant-vector result."""
    return {item["metric"].get(label, ""): float(item["value"][1]) for item in result}
