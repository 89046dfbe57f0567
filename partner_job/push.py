"""Push a sensor's breakdown to the Pushgateway, one group per sensor (grouping key `sensor`).

PUT semantics (push_to_gateway) replace the whole group, so a usage the
partner stops reporting disappears instead of lingering with an old share.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

JOB = "partner_job"


def push_breakdown(
    gateway: str,
    sensor: str,
    shares: dict[str, float],
    window_joules: float,
    window: tuple[int, int],
    now: float,
) -> None:
    reg = CollectorRegistry()
    share = Gauge(
        "elec_usage_share_ratio",
        "Partner's share of the window's energy per usage, 0..1.",
        ["usage"],
        registry=reg,
    )
    energy = Gauge("elec_usage_energy_joules", "Share x the window's energy, J.", ["usage"], registry=reg)
    for usage, s in sorted(shares.items()):
        share.labels(usage).set(s)
        energy.labels(usage).set(s * window_joules)
    Gauge(
        "partner_job_window_start_timestamp_seconds",
        "Start of the window the breakdown covers.",
        registry=reg,
    ).set(window[0])
    Gauge(
        "partner_job_window_end_timestamp_seconds", "End of the window the breakdown covers.", registry=reg
    ).set(window[1])
    Gauge(
        "partner_job_last_success_timestamp_seconds",
        "When this sensor's last breakdown landed.",
        registry=reg,
    ).set(now)
    push_to_gateway(gateway, job=JOB, registry=reg, grouping_key={"sensor": sensor}, timeout=30)


def window_joules(payload: dict[str, Any]) -> float:
    return 3600.0 * sum(v for v in payload["values"] if v is not None)
