"""Live values of modelled sensors, exact and cheap to advance: the exporter's and the simulator's.

The counter at second t is the sum of every second of power before it.  The
ledger gives it once at start; after that each scrape only adds the seconds
elapsed since the previous one, for all sensors at once.  The result is the
same integer the pure model gives (tests compare them), at a cost independent
of how far the meter's index reading lies.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from homewatt import loadmodel
from homewatt.fleet import Sensor
from homewatt.meter import Ledger, counter

# Beyond this many seconds since the last scrape (a suspended machine, a clock jump),
# recomputing from the ledger is cheaper than summing every missed second.
_MAX_CATCH_UP = 600


class LiveFleet:
    def __init__(self, sensors: Sequence[Sensor], ledger: Ledger | None = None):
        self.sensors = tuple(sensors)
        self.ledger = ledger or Ledger(self.sensors)
        self._lock = threading.Lock()
        self._all_modelled = all(s.replay is None for s in self.sensors)
        self._t: int | None = None
        self._power = np.zeros(len(self.sensors), np.int64)
        self._energy = np.zeros(len(self.sensors), np.int64)

    def available(self, t: int) -> np.ndarray:
        """Which sensors have a reading at second `t` (replayed data can have holes)."""
        if self._all_modelled:
            return np.ones(len(self.sensors), dtype=bool)
        return loadmodel.available(self.sensors, [t])[:, 0]

    def at(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """(power W, counter J) of every sensor at second `t`."""
        with self._lock:
            if self._t != t:
                if self._t is not None and t - self._t == 1:  # the usual 1 s scrape
                    self._energy = self._energy + self._power
                elif self._t is not None and 0 < t - self._t <= _MAX_CATCH_UP:
                    missed = np.arange(self._t, t)
                    self._energy = self._energy + loadmodel.power(self.sensors, missed).sum(axis=1)
                else:
                    self._energy = counter(self.ledger, [t])[:, 0]
                    self.ledger.save()
                self._power = loadmodel.power(self.sensors, [t])[:, 0]
                self._t = t
            return self._power, self._energy
