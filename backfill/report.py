"""The backfill's progress on the Pushgateway, for HomewattBackfillIncomplete and Fleet health.

Pushed at the start (what the journal already holds), after each chunk (at most
every few seconds) and at the end.  A backfill killed halfway cannot say so; it
leaves `done < planned` behind with an old push time, which is exactly what the
alert looks for.  A Pushgateway that is absent (a backfill run by hand, without
the stack) costs one warning and nothing else: the journal stays the truth.
"""

from __future__ import annotations

import logging
import threading
import time

from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

from homewatt.contract import BACKFILL_DONE, BACKFILL_JOB, BACKFILL_PLANNED

log = logging.getLogger(__name__)


class Progress:
    def __init__(self, gateway: str | None, planned: int, every: float = 5.0):
        self.gateway = gateway
        self.every = every
        self.lock = threading.Lock()
        self.registry = CollectorRegistry()
        Gauge(BACKFILL_PLANNED.name, BACKFILL_PLANNED.help, registry=self.registry).set(planned)
        self.done = Gauge(BACKFILL_DONE.name, BACKFILL_DONE.help, registry=self.registry)
        self.last = float("-inf")
        self.warned = False

    def __call__(self, done: int, force: bool = False) -> None:
        """Report `done` chunks; pushed now if `force` or the last push is `every` s old."""
        if not self.gateway:
            return
        with self.lock:
            self.done.set(done)
            now = time.monotonic()
            if not force and now - self.last < self.every:
                return
            self.last = now
            try:
                push_to_gateway(self.gateway, job=BACKFILL_JOB, registry=self.registry, timeout=10)
            except Exception as exc:  # the journal is the record; this is only its echo
                if not self.warned:
                    log.warning("cannot push the backfill's progress to %s: %s", self.gateway, exc)
                    self.warned = True
