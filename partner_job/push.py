"""Push a sensor's breakdown to the Pushgateway, one group per sensor (grouping key `sensor`).

PUT semantics (push_to_gateway) replace the whole group, so a usage the
partner stops reporting disappears instead of lingering with an old share.
"""

from __future__ import annotations

import json
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

from homewatt.contract import (
    LAST_RUN,
    LAST_RUN_WINDOW_END,
    OUTBOX_JOB,
    OUTBOX_OLDEST,
    OUTBOX_PENDING,
    OUTBOX_REJECTED,
    PARTNER_JOB,
    PARTNER_LAST_SUCCESS,
    PARTNER_WINDOW_END,
    PARTNER_WINDOW_START,
    SENSOR,
    USAGE_ENERGY,
    USAGE_SHARE,
    Metric,
)
from partner_job.outbox import Outbox


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


def push_outbox(gateway: str, outbox: Outbox, last_run: Path) -> None:
    """The outbox's state as read from disk, one group (job=OUTBOX_JOB) replaced whole.

    Read from the directory rather than counted by the run, so that a manual run, a
    retry and the scheduler all push the same truth, and a payload an operator
    requeued or deleted stops counting at the next push.  Only each entry's fields
    are read, one at a time, never its payload.  Sensors with nothing pending or
    rejected have no series: the alerts need no `> 0` on a zero.
    """
    reg = CollectorRegistry()
    pending, oldest, rejected = (_gauge(m, reg) for m in (OUTBOX_PENDING, OUTBOX_OLDEST, OUTBOX_REJECTED))
    first: dict[str, float] = {}
    for entry in outbox.scan():
        pending.labels(entry.sensor).inc()
        written = entry.created or entry.path.stat().st_mtime
        first[entry.sensor] = min(first.get(entry.sensor, written), written)
    for sensor, written in first.items():
        oldest.labels(sensor).set(written)
    for record in outbox.rejected():
        rejected.labels(record["sensor"]).inc()
    try:
        run = json.loads(last_run.read_text())
    except (OSError, ValueError):
        run = None
    if run is not None:
        _gauge(LAST_RUN, reg).set(run["finished"])
        _gauge(LAST_RUN_WINDOW_END, reg).set(run["window_end"])
    push_to_gateway(gateway, job=OUTBOX_JOB, registry=reg, timeout=30)
