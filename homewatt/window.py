"""Which midnights the job fires at, and which 30 local days each one covers.

Everything is in the fleet's timezone (Europe/Paris by default).  Local midnight
exists there (DST moves 02:00/03:00; zones that change clocks at midnight, such
as America/Santiago, are not supported), so a fire time is simply 00:00 local of
a date; the window is the 30 local calendar days
before it, which is 43,140 to 43,260 minutes depending on DST changes inside.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass

from homewatt.fleet import DEFAULT_TIMEZONE

TZ = DEFAULT_TIMEZONE  # callers pass the fleet's own timezone
WINDOW_DAYS = 30


def zone(tz: str = TZ) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(tz)


def midnight(date: dt.date, tz: str = TZ) -> dt.datetime:
    return dt.datetime.combine(date, dt.time(0, 0), zone(tz))


def fire_times(after: dt.datetime, tz: str = TZ) -> Iterator[dt.datetime]:
    """Local midnights strictly after `after` (aware), forever."""
    date = after.astimezone(zone(tz)).date()
    while True:
        date += dt.timedelta(days=1)
        yield midnight(date, tz)


def last_fire_time(now: dt.datetime, tz: str = TZ) -> dt.datetime:
    """The most recent local midnight at or before `now`."""
    return midnight(now.astimezone(zone(tz)).date(), tz)


@dataclass(frozen=True)
class Window:
    end: dt.datetime  # the midnight that fires it (local, aware)
    start: dt.datetime

    @classmethod
    def ending(cls, fire: dt.datetime, tz: str = TZ) -> Window:
        local = fire.astimezone(zone(tz))
        if (local.hour, local.minute, local.second, local.microsecond) != (0, 0, 0, 0):
            raise ValueError(f"{fire.isoformat()} is not a local midnight in {tz}")
        return cls(end=local, start=midnight(local.date() - dt.timedelta(days=WINDOW_DAYS), tz))

    @property
    def start_ts(self) -> int:
        return int(self.start.timestamp())

    @property
    def end_ts(self) -> int:
        return int(self.end.timestamp())

    @property
    def minutes(self) -> int:
        return (self.end_ts - self.start_ts) // 60

    @property
    def end_date(self) -> str:
        """The window's end date, as in the Idempotency-Key."""
        return self.end.date().isoformat()

    def start_utc(self) -> str:
        return dt.datetime.fromtimestamp(self.start_ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
