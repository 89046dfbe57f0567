"""Per-minute energy of one sensor over a window, read through Prometheus's range API.

The counter is read at every minute instant of the window (a `query_range`
whose start is on the boundary does not extrapolate, unlike increase()), and a
minute's energy is the difference of two consecutive readings.  A reading
counts only if a sample lies within 2 s of the instant: anything older means
the meter was silent there, and both minutes around it become null.  Requests
are split so none asks more than 10,000 points (Prometheus refuses 11,000).

Read through Thanos Query, each request asks for deduplicated data at raw
resolution and refuses a partial answer: a store that is down must fail the
read (the sensor is retried at the next run), never turn its minutes into nulls
that the partner would take for a silent meter.  Prometheus ignores these
parameters.
"""

from __future__ import annotations

import numpy as np

from homewatt import promapi
from homewatt.contract import ENERGY, SENSOR
from homewatt.window import Window

MAX_POINTS = 10_000
FRESH = "2s"
THANOS = {**promapi.HISTORY, "max_source_resolution": "0s"}  # minute readings: raw data only


def counter_readings(prom: str, sensor: str, window: Window, max_points: int = MAX_POINTS) -> np.ndarray:
    """Counter (J) at start + 60 k for k = 0..minutes; NaN where no fresh sample."""
    n = window.minutes + 1
    out = np.full(n, np.nan)
    expr = f'last_over_time({ENERGY.name}{{{SENSOR}="{sensor}"}}[{FRESH}])'
    for first in range(0, n, max_points):
        last = min(n, first + max_points) - 1
        start = window.start_ts + 60 * first
        end = window.start_ts + 60 * last
        result = promapi.query_range(prom, expr, start, end, 60, extra=THANOS)
        for series in result:  # one series normally; several only if labels changed
            for t, v in series["values"]:
                k = (int(round(float(t))) - window.start_ts) // 60
                out[k] = float(v)
    return out


def requests_needed(window: Window, max_points: int = MAX_POINTS) -> int:
    return -(-(window.minutes + 1) // max_points)


def minute_wh(readings: np.ndarray) -> list[float | None]:
    """values[i] = energy (Wh) of minute i; None where either reading is missing or the counter reset."""
    diff = np.diff(readings)
    values: list[float | None] = []
    for d in diff.tolist():
        values.append(None if d != d or d < 0 else d / 3600.0)  # d != d: NaN
    return values
