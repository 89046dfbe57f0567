"""Local wall-clock time for arrays of UTC seconds.

Every household habit in the load model (off-peak water heating at 22:00,
dinner at 19:30) follows local time, DST included.  zoneinfo answers one
instant at a time, so offsets are looked up once per UTC quarter-hour and
cached: zone transitions in use today all fall on a quarter-hour.
"""

from __future__ import annotations

import datetime as dt
import functools
import zoneinfo

import numpy as np

from homewatt.contract import DAY, QUARTER_HOUR


@functools.lru_cache(maxsize=8192)
def _day_offsets(tz: str, utc_day: int) -> np.ndarray:
    """UTC offsets (s) of the 96 quarter-hours of one UTC day."""
    zone = zoneinfo.ZoneInfo(tz)
    base = utc_day * DAY
    out = np.empty(96, dtype=np.int64)
    for q in range(96):
        instant = dt.datetime.fromtimestamp(base + q * QUARTER_HOUR, dt.UTC).astimezone(zone)
        out[q] = int(instant.utcoffset().total_seconds())  # type: ignore[union-attr]
    out.setflags(write=False)
    return out


def utc_offsets(tz: str, ts: np.ndarray) -> np.ndarray:
    """The zone's UTC offset in seconds at each instant of `ts` (int64 UTC seconds)."""
    ts = np.asarray(ts, dtype=np.int64)
    days = ts // DAY
    d0, d1 = int(days.min()), int(days.max())
    table = np.stack([_day_offsets(tz, d) for d in range(d0, d1 + 1)])
    return table[days - d0, (ts % DAY) // QUARTER_HOUR]


def local_seconds(tz: str, ts: np.ndarray) -> np.ndarray:
    """Seconds since the epoch as read on a local clock (wall time as if it were UTC)."""
    ts = np.asarray(ts, dtype=np.int64)
    return ts + utc_offsets(tz, ts)
