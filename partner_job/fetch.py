"""Per-minute energy of sensors over a window, read through Prometheus's range API.

The counter is read at every minute instant of the window (a `query_range`
whose start is on the boundary does not extrapolate, unlike increase()), and a
minute's energy is the difference of two consecutive readings.  A reading
counts only if a sample lies within 2 s of the instant: anything older means
the meter was silent there, and both minutes around it become null.  Requests
are split so none asks more than 10,000 points (Prometheus refuses 11,000).

Several sensors can be read by one request (a `sensor=~"a|b|c"` matcher): each
series is evaluated exactly as alone, and the fleet takes `batch` times fewer
requests, which is what the server and HTTP cost most of (benchmarks/partner_job_rate.py).

Read through Thanos Query, each request asks for deduplicated data at raw
resolution and refuses a partial answer: a store that is down must fail the
read (the sensor is retried at the next run), never turn its minutes into nulls
that the partner would take for a silent meter.  Prometheus ignores these
parameters.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

import numpy as np

from homewatt import promapi
from homewatt.contract import ENERGY, SENSOR
from homewatt.window import Window

MAX_POINTS = 10_000
FRESH = "2s"
THANOS = {**promapi.HISTORY, "max_source_resolution": "0s"}  # minute readings: raw data only


def counter_readings(prom: str, sensor: str, window: Window, max_points: int = MAX_POINTS) -> np.ndarray:
    """Counter (J) at start + 60 k for k = 0..minutes; NaN where no fresh sample."""
    return counter_readings_many(prom, [sensor], window, max_points)[sensor]


def selector(sensors: Sequence[str]) -> str:
    """The energy counter of these sensors: an exact match for one, a regex of literals for more."""
    if len(sensors) == 1:
        return f"{ENERGY.name}{{{SENSOR}={json.dumps(sensors[0])}}}"
    return f"{ENERGY.name}{{{SENSOR}=~{json.dumps('|'.join(re.escape(s) for s in sensors))}}}"


def counter_readings_many(
    prom: str, sensors: Sequence[str], window: Window, max_points: int = MAX_POINTS
) -> dict[str, np.ndarray]:
    """counter_readings of each sensor, with one request per 10,000 minutes for all of them."""
    n = window.minutes + 1
    start_ts = window.start_ts
    out = {s: np.full(n, np.nan) for s in sensors}
    expr = f"last_over_time({selector(sensors)}[{FRESH}])"
    for first in range(0, n, max_points):
        last = min(n, first + max_points) - 1
        start = start_ts + 60 * first
        end = start_ts + 60 * last
        result = promapi.query_range(prom, expr, start, end, 60, extra=THANOS)
        for series in result:  # one per sensor normally; several only if labels changed
            readings = out.get(series["metric"].get(SENSOR, ""))
            if readings is None:
                continue
            points = series["values"]
            t = np.fromiter((p[0] for p in points), np.float64, len(points))
            k = (np.rint(t).astype(np.int64) - start_ts) // 60
            readings[k] = np.array([p[1] for p in points], dtype=np.float64)
    return out


def requests_needed(window: Window, max_points: int = MAX_POINTS) -> int:
    return -(-(window.minutes + 1) // max_points)


def minute_wh(readings: np.ndarray) -> list[float | None]:
    """values[i] = energy (Wh) of minute i; None where either reading is missing or the counter reset."""
    diff = np.diff(readings)
    values: list[float | None] = (diff / 3600.0).tolist()
    for i in np.flatnonzero(~(diff >= 0)).tolist():  # NaN compares false: a missing reading
        values[i] = None
    return values
