"""The energy counter: the exact running sum of the load model's power.

counter(t1) - counter(t0) == sum(power over [t0, t1)) x 1 s, in integer joules,
for any t0 <= t1.  The counter is anchored on a meter index reading (the
sensor's `index_date`/`index_kwh`); reaching an instant far from the anchor
means summing every second in between, so whole UTC days are summed once and
kept in a ledger (in memory, and on disk when a cache directory is given:
both the exporter and the backfill start from it).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from homewatt import loadmodel
from homewatt.contract import DAY
from homewatt.fleet import Sensor

log = logging.getLogger(__name__)


def fingerprint(sensor: Sensor) -> str:
    """Changes whenever the sensor's power could change: its config or the model."""
    text = f"{loadmodel.MODEL_VERSION}|{sensor!r}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class Ledger:
    """Energy per UTC day per sensor, computed once and reused."""

    def __init__(self, sensors: Sequence[Sensor], cache_dir: str | Path | None = None):
        self.sensors = tuple(sensors)
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self._days: list[dict[int, int]] = [self._load(s) for s in self.sensors]
        self._dirty = [False] * len(self.sensors)

    def _path(self, sensor: Sensor) -> Path | None:
        if self.cache_dir is None:
            return None
        return self.cache_dir / f"{sensor.id}-{fingerprint(sensor)}.json"

    def _load(self, sensor: Sensor) -> dict[int, int]:
        path = self._path(sensor)
        if path is None or not path.exists():
            return {}
        try:
            return {int(k): int(v) for k, v in json.loads(path.read_text()).items()}
        except (OSError, ValueError) as exc:  # a damaged cache is recomputed, never trusted
            log.warning("ignoring unreadable energy ledger %s: %s", path, exc)
            return {}

    def save(self) -> None:
        """Write changed ledgers atomically (a killed process leaves the old file intact)."""
        for i, sensor in enumerate(self.sensors):
            path = self._path(sensor)
            if path is None or not self._dirty[i]:
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".ledger-")
            with os.fdopen(fd, "w") as fh:
                json.dump({str(k): v for k, v in sorted(self._days[i].items())}, fh)
            os.replace(tmp, path)
            self._dirty[i] = False

    def day_energy(self, day: int) -> np.ndarray:
        """Joules each sensor used over UTC day `day` (days since 1970-01-01)."""
        missing = [i for i, d in enumerate(self._days) if day not in d]
        if missing:
            group = [self.sensors[i] for i in missing]
            sums = day_sums(group, day)
            for i, total in zip(missing, sums, strict=True):
                self._days[i][day] = int(total)
                self._dirty[i] = True
        return np.array([d[day] for d in self._days], dtype=np.int64)

    def at_midnight(self, day: int) -> np.ndarray:
        """Each sensor's counter at 00:00 UTC of `day`."""
        out = np.empty(len(self.sensors), dtype=np.int64)
        for i, s in enumerate(self.sensors):
            a = s.index_day
            if day >= a:
                span = sum(int(self._one(i, d)) for d in range(a, day))
                out[i] = s.index_joules + span
            else:
                span = sum(int(self._one(i, d)) for d in range(day, a))
                out[i] = s.index_joules - span
                if out[i] < 0:
                    raise ValueError(
                        f"sensor {s.id}: index {s.index_kwh} kWh on {s.index_date} is too small "
                        f"for history back to day {day} (the counter would be negative)"
                    )
        return out

    def _one(self, i: int, day: int) -> int:
        if day not in self._days[i]:
            self.day_energy(day)
        return self._days[i][day]

    def warm(self, days: Sequence[int], progress: bool = False) -> None:
        """Compute the given days for every sensor, with a progress bar when asked."""
        todo = [d for d in days if any(d not in x for x in self._days)]
        if not todo:
            return
        from tqdm import tqdm

        for d in tqdm(todo, desc="energy ledger", unit="day", disable=not progress):
            self.day_energy(d)
        self.save()


def _chunks(n: int, per_row: int) -> list[slice]:
    """Sensor slices small enough that a (sensors, instants) array stays near 2 M cells."""
    size = max(1, 2_000_000 // max(per_row, 1))
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def day_sums(sensors: Sequence[Sensor], day: int) -> np.ndarray:
    """Joules each sensor used over one UTC day, computed in memory-bounded chunks."""
    sensors = tuple(sensors)
    seconds = np.arange(day * DAY, (day + 1) * DAY)
    return np.concatenate(
        [loadmodel.power(sensors[c], seconds).sum(axis=1) for c in _chunks(len(sensors), DAY)]
    )


def counter(ledger: Ledger, ts: np.ndarray | Sequence[int]) -> np.ndarray:
    """Counter values (J) of every ledger sensor at each instant: shape (S, T), int64."""
    t = np.asarray(ts, dtype=np.int64).ravel()
    out = np.empty((len(ledger.sensors), t.size), dtype=np.int64)
    days = t // DAY
    for day in np.unique(days):
        sel = np.flatnonzero(days == day)
        base = ledger.at_midnight(int(day))
        offsets = t[sel] - day * DAY
        seconds = np.arange(day * DAY, day * DAY + int(offsets.max()))
        for c in _chunks(len(ledger.sensors), seconds.size):
            watts = loadmodel.power(ledger.sensors[c], seconds)
            running = np.zeros((watts.shape[0], seconds.size + 1), np.int64)
            np.cumsum(watts, axis=1, out=running[:, 1:])
            out[c, sel] = base[c, None] + running[:, offsets]
    return out
