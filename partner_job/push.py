"""Push a sensor's breakdown to the Pushgateway, one group per sensor (grouping key `sensor`).

PUT semantics (push_to_gateway) replace the whole group, so a usage the
partner stops reporting disappears instead of lingering with an old share.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

from homewatt.contract import (
    JOULES_PER_WH,
    PARTNER_JOB,
    PARTNER_LAST_SUCCESS,
    PARTNER_WINDOW_END,
    PARTNER_WINDOW_START,
    SENSOR,
    USAGE_ENERGY,
    USAGE_SHARE,
    Metric,
)


def _gauge(metric: Metric, registry: CollectorRegistry) -> Gauge:
    return Gauge(metric.name, metric.help, list(metric.labels), registry=registry)


def push_breakdown(
    gateway: str,
    sensor: str,
    shares: dict[str, float],
    window_joules: float,
    window: tuple[int, int],
    now: float,
) -> None:
    reg = CollectorRegistry()
    share, energy = _gauge(USAGE_SHARE, reg), _gauge(USAGE_ENERGY, reg)
    for usage, s in sorted(shares.items()):
        share.labels(usage).set(s)
        energy.labels(usage).set(s * window_joules)
    _gauge(PARTNER_WINDOW_START, reg).set(window[0])
    _gauge(PARTNER_WINDOW_END, reg).set(window[1])
    _gauge(PARTNER_LAST_SUCCESS, reg).set(now)
    push_to_gateway(gateway, job=PARTNER_JOB, registry=reg, grouping_key={SENSOR: sensor}, timeout=30)


def window_joules(payload: dict[str, Any]) -> float:
    return JOULES_PER_WH * sum(v for v in payload["values"] if v is not None)
