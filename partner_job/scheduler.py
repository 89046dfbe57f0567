"""The long-running scheduler: fire at every local midnight, catch up once, never twice.

State (`last_midnight`) is written after a run's payloads are in the outbox:
a restart after that point does not fetch again, and the outbox delivers what
is left.  After downtime only the latest missed midnight runs (its window
covers the 30 days anyway).  Between midnights the outbox is retried every
`retry_every` seconds.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path

from homewatt.window import TZ, fire_times, last_fire_time, zone

log = logging.getLogger(__name__)


class State:
    def __init__(self, path: Path):
        self.path = path

    def last_midnight(self) -> dt.datetime | None:
        try:
            return dt.datetime.fromisoformat(json.loads(self.path.read_text())["last_midnight"])
        except (OSError, ValueError, KeyError):
            return None

    def record(self, midnight: dt.datetime) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"last_midnight": midnight.isoformat()}))
        tmp.replace(self.path)


class Scheduler:
    def __init__(
        self,
        state: State,
        run: Callable[[dt.datetime], None],
        deliver: Callable[[], None],
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        retry_every: float = 300.0,
        tz: str = TZ,
    ):
        self.state = state
        self.run = run
        self.deliver = deliver
        self.clock = clock
        self.retry_every = retry_every
        self.tz = tz
        self.stop = threading.Event()

    def due(self) -> dt.datetime | None:
        """The midnight to run now, if any: the latest past one, unless already done."""
        latest = last_fire_time(self.clock(), self.tz)
        done = self.state.last_midnight()
        if done is not None and done >= latest:
            return None
        return latest

    def tick(self) -> None:
        midnight = self.due()
        if midnight is not None:
            log.info("running the window ending %s", midnight.isoformat())
            self.run(midnight)
            self.state.record(midnight)
        self.deliver()

    def next_wakeup(self) -> float:
        now = self.clock()
        nxt = next(fire_times(now, self.tz))
        return max(0.5, min(self.retry_every, (nxt - now).total_seconds()))

    def serve(self) -> None:
        log.info(
            "scheduler up: next run at %s", next(fire_times(self.clock(), self.tz)).astimezone(zone(self.tz))
        )
        while not self.stop.is_set():
            try:
                self.tick()
            except Exception:
                log.exception("scheduler tick failed; retrying later")
            self.stop.wait(self.next_wakeup())
