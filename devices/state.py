"""One real device's served values, and the rules that decide what a reading may change.

Every protocol ends here, so the contract holds the same for a Shelly, a
Tasmota plug and a Linky:
- a reading from the future, or above what the home can draw, is dropped and
  counted by reason (contract.DEVICE_REJECTED), never served;
- the energy counter is the device's own index (Wh -> J): exact, and it survives
  exporter restarts because the device keeps it.  An index that goes backwards is
  a counter reset (a replaced or reset device) and is served as such; an index
  that leaps further than the subscribed power could explain is dropped, unless
  the next readings confirm the new level (a device swapped for one that had
  counted elsewhere);
- a device silent for longer than its staleness limit serves nothing at all, so
  Prometheus marks its series stale instead of repeating an old value.

A Linky reports apparent power (VA), not active power.  Its active power is
estimated as VA x the power factor the meter itself implies: the energy its
index counted over the last half hour divided by the VA integrated over the same
time.  Until the index has advanced by `PF_MIN_WH`, no active power is served.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

import numpy as np

from devices.reading import FUTURE, IMPLAUSIBLE, REASONS, Reading, Rejected
from homewatt.fleet import Device

log = logging.getLogger(__name__)

FUTURE_TOLERANCE_S = 60.0  # device clocks drift; more than this ahead is not drift
DEFAULT_MAX_POWER_W = 36_000.0  # the largest French household subscription, 36 kVA
SUBSCRIPTION_MARGIN = 1.25  # a meter's declared subscription, with the overload it tolerates briefly
INDEX_SLACK_S = 2.0  # an index may carry the energy of the seconds before the reading
JUMP_CONFIRM = 5  # consecutive consistent readings that make an index leap a new level
PF_WINDOW_S = 1800.0
PF_MIN_WH = 20  # below this many Wh, the 1 Wh resolution of the index makes the estimate too coarse
NAN = float("nan")


@dataclass(frozen=True)
class Values:
    """What a scrape serves for one device; None is "leave the line out"."""

    power_w: float | None
    apparent_va: float | None
    energy_j: float | None
    last_seen: float | None


class PowerFactor:
    """Active/apparent power ratio implied by a meter's index over a sliding window."""

    def __init__(self, window_s: float = PF_WINDOW_S, min_wh: float = PF_MIN_WH):
        self.window_s = window_s
        self.min_wh = min_wh
        self._points: deque[tuple[float, float, float]] = deque()  # (t, VA, index Wh)
        self.ratio: float | None = None

    def add(self, t: float, va: float, wh: float) -> None:
        if self._points and (wh < self._points[-1][2] or t <= self._points[-1][0]):
            self._points.clear()  # a reset or a clock step: start over
        self._points.append((t, va, wh))
        while self._points and t - self._points[0][0] > self.window_s:
            self._points.popleft()
        first, last = self._points[0], self._points[-1]
        counted_wh = last[2] - first[2]
        if counted_wh < self.min_wh:
            return
        pts = list(self._points)
        # The VA each frame reports holds until the next frame: integrate it as steps.
        va_j = sum(va * (t1 - t0) for (t0, va, _), (t1, _, _) in zip(pts, pts[1:], strict=False))
        if va_j > 0:
            self.ratio = min(1.0, counted_wh * 3600.0 / va_j)


class DeviceState:
    """The last good reading of one device sensor, and the count of the bad ones."""

    def __init__(self, sensor_id: str, device: Device, clock: Callable[[], float] = time.time):
        self.sensor_id = sensor_id
        self.device = device
        self.clock = clock
        self.rejected = dict.fromkeys(REASONS, 0)
        self.last_seen: float | None = None
        self.power_w: float | None = None
        self.apparent_va: float | None = None
        self.energy_wh: float | None = None
        self._energy_at = 0.0
        self._declared_max: float | None = None
        self._leap: list[float] = []  # index values of a leap awaiting confirmation
        self._pf = PowerFactor() if device.format == "tic" else None
        self._lock = threading.Lock()
        self._logged: set[str] = set()
        self._row: np.ndarray | None = None  # see share()
        self._counts: np.ndarray | None = None
        self._row_lock: AbstractContextManager[object] = self._lock  # replaced by the hub's, with the row

    def max_power_w(self) -> float:
        if self.device.max_power_w is not None:
            return self.device.max_power_w
        if self._declared_max is not None:
            return self._declared_max * SUBSCRIPTION_MARGIN
        return DEFAULT_MAX_POWER_W * SUBSCRIPTION_MARGIN

    def reject(self, exc: Rejected) -> None:
        with self._lock:
            self.rejected[exc.reason] += 1
            if self._counts is not None:
                with self._row_lock:
                    self._counts[REASONS.index(exc.reason)] += 1
            first = exc.reason not in self._logged
            self._logged.add(exc.reason)
        # The first of each kind is worth a line; a flood of them is worth a counter, not a log.
        if first:
            log.warning("%s: dropped a reading (%s); further ones are only counted", self.sensor_id, exc)

    def offer(self, reading: Reading) -> bool:
        """Serve `reading` if it passes the checks; count it as rejected if not."""
        try:
            with self._lock:
                self._accept(reading, self.clock())
            return True
        except Rejected as exc:
            self.reject(exc)
            return False

    def _accept(self, r: Reading, now: float) -> None:
        if r.time is not None and r.time > now + FUTURE_TOLERANCE_S:
            raise Rejected(FUTURE, f"the device's clock reads {r.time - now:.0f} s ahead of ours")
        if r.max_power_w is not None:
            self._declared_max = r.max_power_w
        limit = self.max_power_w()
        for name, value in (("power", r.power_w), ("apparent power", r.apparent_va)):
            if value is not None and value > limit:
                raise Rejected(IMPLAUSIBLE, f"{name} {value:g} above the {limit:g} this home can draw")
        if r.energy_wh is not None:
            self._check_index(r.energy_wh, now, limit)
        # Everything checked: the reading is served.
        if r.power_w is not None:
            self.power_w = r.power_w
        if r.apparent_va is not None:
            self.apparent_va = r.apparent_va
        if r.energy_wh is not None:
            self.energy_wh = r.energy_wh
            self._energy_at = now
        if self._pf is not None and r.apparent_va is not None and r.energy_wh is not None:
            self._pf.add(now, r.apparent_va, r.energy_wh)
            if self._pf.ratio is not None:
                self.power_w = r.apparent_va * self._pf.ratio
        self.last_seen = now
        self._publish()

    def _check_index(self, wh: float, now: float, limit: float) -> None:
        previous = self.energy_wh
        if previous is None:
            return
        if wh < previous:
            log.warning(
                "%s: energy index went back from %g to %g Wh: a counter reset", self.sensor_id, previous, wh
            )
            self._leap.clear()
            return
        most = limit * (now - self._energy_at + INDEX_SLACK_S) / 3600.0
        if wh - previous <= most:
            self._leap.clear()
            return
        if self._leap and 0 <= wh - self._leap[-1] <= limit * (INDEX_SLACK_S + 60) / 3600.0:
            self._leap.append(wh)
        else:
            self._leap = [wh]
        if len(self._leap) >= JUMP_CONFIRM:
            log.warning(
                "%s: energy index leapt from %g to %g Wh and stayed: taken as the new level",
                self.sensor_id,
                previous,
                wh,
            )
            self._leap.clear()
            return
        raise Rejected(
            IMPLAUSIBLE, f"index leapt {wh - previous:g} Wh, more than the {most:.1f} Wh this home can draw"
        )

    def values(self, now: float | None = None) -> Values:
        """The served values: nothing but `last_seen` once the device has been silent too long."""
        now = self.clock() if now is None else now
        with self._lock:
            if self.last_seen is None or now - self.last_seen > self.device.stale_after_s:
                return Values(None, None, None, self.last_seen)
            return Values(self.power_w, self.apparent_va, self._energy_j(), self.last_seen)

    def _energy_j(self) -> float | None:
        # Rounded to the mJ: a Shelly's 3-decimal Wh times 3600 would otherwise carry float noise.
        return None if self.energy_wh is None else round(self.energy_wh * 3600.0, 3)

    def share(self, row: np.ndarray, counts: np.ndarray, lock: AbstractContextManager[object]) -> None:
        """Keep `row` = (power W, apparent VA, energy J, last seen), NaN for None, up to date
        with every accepted reading, and add each rejection to `counts` (one per REASONS), both
        written under `lock`: a scrape then reads a thousand devices in one copy
        (devices/hub.py) instead of a thousand `values()` calls, even from another process."""
        with self._lock:
            self._row, self._counts, self._row_lock = row, counts, lock
            self._publish()

    def _publish(self) -> None:
        """Write the last good reading into the shared row; the caller holds `_lock`."""
        if self._row is None:
            return
        values = (self.power_w, self.apparent_va, self._energy_j(), self.last_seen)
        with self._row_lock:
            self._row[:] = [NAN if v is None else v for v in values]
