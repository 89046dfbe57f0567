"""The modelled sensors' lines one second ahead, so a scrape does not wait for the model.

A modelled sensor's power and counter at second t are a pure function of t
(homewatt/live.py), so nothing forces the exporter to compute them while
Prometheus waits.  After each scrape, a background thread computes and renders
the next second, and gzips it if scrapes ask for gzip; the scrape in that second
then only adds the devices' lines.  At 9,000 modelled sensors this takes the model
step, the modelled text and most of the gzip (≈ 20 ms together) out of every 1 s
scrape (benchmarks/exporter_render.py).

Prometheus scrapes a target at a fixed phase within its interval, a little late
or early each time.  A scrape that comes within EDGE of a second's boundary may
fall either side of it next time, so both seconds are computed (in time order):
twice the model's background work for such a target, rather than a scrape that
computes its own second (≈ 40–55 ms at 9,000 sensors, the slow scrapes of
benchmarks/exporter_render.py before this).

A scrape whose second is not ready (the first one, one after a pause or a clock
jump, a second Prometheus scraping at another phase) computes it itself, as the
exporter always did.  The last few seconds stay ready too, so a scrape that
started just before a second's end never sends the model backwards, which would
make it sum the day again.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from exporter.render import FleetRenderer, Modelled
from homewatt.live import LiveFleet

log = logging.getLogger(__name__)

KEEP = 3  # seconds kept ready: the one just computed and the two before (and after) it
INTERVAL_S = 1.0  # the scrape interval the stack's Prometheus uses for the exporter
EDGE_S = 0.1  # how late or early a scrape may come: both seconds are prepared this near a boundary


@dataclass(frozen=True)
class Second:
    t: int
    modelled: Modelled


class Ahead:
    def __init__(self, live: LiveFleet, renderer: FleetRenderer):
        self.live = live
        self.renderer = renderer
        self._ready: dict[int, Second] = {}  # replaced whole, so readers need no lock
        self._step = threading.Lock()  # the model advances one second at a time, in one thread
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="exporter-ahead")
        self._asked: int | None = None

    def get(self, t: int) -> Second:
        """Second `t`'s modelled lines: ready, or computed now."""
        ready = self._ready.get(t)
        return ready if ready is not None else self._compute(t)

    def prepare_next(self, now: float, compress: bool = False) -> None:
        """Compute ahead the second(s) the next scrape, one interval after one at `now`, may ask for."""
        for t in sorted({int(now + INTERVAL_S - EDGE_S), int(now + INTERVAL_S + EDGE_S)}):
            self.prepare(t, compress)

    def prepare(self, t: int, compress: bool = False) -> None:
        """Compute second `t` in the background, unless it is ready or already asked for;
        `compress`: its lines gzipped too, for a scrape that asks for gzip."""
        if t in self._ready or self._asked == t:
            return
        self._asked = t
        self._pool.submit(self._background, t, compress)

    def _background(self, t: int, compress: bool) -> None:
        try:
            second = self._compute(t)
            if compress:
                second.modelled.power.deflated, second.modelled.energy.deflated  # noqa: B018 - cached
        except Exception:  # the scrape that needs it computes it again, and fails visibly
            log.exception("computing second %d ahead failed", t)

    def _compute(self, t: int) -> Second:
        with self._step:
            ready = self._ready.get(t)
            if ready is not None:  # computed while this thread waited for the lock
                return ready
            power, energy = self.live.at(t)
            ok = self.live.available(t)
            if not ok.all():  # a replayed household's missing minute: serve a gap, not a value
                power, energy = np.where(ok, power, np.nan), np.where(ok, energy, np.nan)
            second = Second(t, self.renderer.modelled(power, energy))
            # The seconds around this one: after a clock jump, the others will not be asked for.
            self._ready = {k: v for k, v in (*self._ready.items(), (t, second)) if abs(k - t) < KEEP}
            return second
