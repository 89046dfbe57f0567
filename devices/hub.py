"""Every device sensor of a fleet, its source started and its values ready for a scrape."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from devices.mqtt import MqttSource, source_label
from devices.reading import REASONS
from devices.state import DeviceState
from devices.ticport import TicPort
from homewatt.fleet import Device, Sensor


def port_path(port: str, data: Path) -> Path:
    """A relative TIC port is under the data directory, where the simulator links its pty."""
    return Path(port) if Path(port).is_absolute() else data / port


def source_name(device: Device) -> str:
    """The `source` label: the broker without its credentials, or the port as the fleet names it."""
    if device.is_mqtt:
        assert device.broker is not None
        return source_label(device.broker)
    return f"tic:{device.port}"


class Devices:
    def __init__(self, sensors: Sequence[Sensor], data: Path, clock: Callable[[], float] = time.time):
        self.sensors = tuple(s for s in sensors if s.device is not None)
        self.clock = clock
        self.states = [DeviceState(s.id, s.device, clock) for s in self.sensors if s.device is not None]
        by_broker: dict[str, list[tuple[Sensor, DeviceState]]] = {}
        self.ports: list[TicPort] = []
        for sensor, state in zip(self.sensors, self.states, strict=True):
            device = state.device
            if device.is_mqtt:
                assert device.broker is not None
                by_broker.setdefault(device.broker, []).append((sensor, state))
            else:
                assert device.port is not None
                path = port_path(device.port, data)
                self.ports.append(TicPort(path, device.mode, state, name=source_name(device)))
        self.brokers = [MqttSource(url, sensors) for url, sensors in by_broker.items()]
        self.sources: list[MqttSource | TicPort] = [*self.brokers, *self.ports]
        # Which source feeds each device sensor: its alerts carry it, so that one broker
        # or port going away is one alert (HomewattDeviceSourceDown), not one per home.
        self.info = [(st.sensor_id, st.device.format, source_name(st.device)) for st in self.states]
        # (power, apparent, energy J, last seen) per device, NaN for none: the states write it.
        self._table = np.full((len(self.states), 4), np.nan)
        self._table_lock = threading.Lock()
        self._stale_after = np.array([st.device.stale_after_s for st in self.states], dtype=float)
        for state, row in zip(self.states, self._table, strict=True):
            state.share(row, self._table_lock)
        self._totals = [0] * len(self.states)  # each device's rejections when `_matrix` was read
        self._matrix = np.zeros((len(self.states), len(REASONS)), dtype=np.int64)
        self._matrix.flags.writeable = False

    def __len__(self) -> int:
        return len(self.sensors)

    def start(self) -> None:
        for source in self.sources:
            source.start()

    def stop(self) -> None:
        for source in self.sources:
            source.stop()

    def snapshot(self, now: float | None = None) -> dict[str, np.ndarray]:
        """Per device sensor: power, apparent power, energy (J), last seen; NaN = leave the line out.

        `rejected` is a (sensors x REASONS) count matrix; `source_up` is per source (`sources`).
        Every scrape asks, so it costs no Python per device: each state keeps its row of one
        shared table up to date (DeviceState.share), staleness is one vector comparison, and
        the rejection counts, which rarely move, are re-read only for the devices whose total
        moved (the matrix is the same read-only array while none did).
        """
        now = self.clock() if now is None else now
        with self._table_lock:
            table = self._table.copy()
        # Silent too long, or never heard: nothing but when it was last heard (NaN compares false).
        stale = ~(now - table[:, 3] <= self._stale_after)
        table[stale, :3] = np.nan
        return {
            "power": table[:, 0],
            "apparent": table[:, 1],
            "energy": table[:, 2],
            "last_seen": table[:, 3],
            "source_up": np.array([float(s.up) for s in self.sources]),
            "rejected": self._rejected(),
        }

    def _rejected(self) -> np.ndarray:
        totals = [state.rejections for state in self.states]
        if totals != self._totals:
            matrix = self._matrix.copy()
            for i, (state, total) in enumerate(zip(self.states, totals, strict=True)):
                if total != self._totals[i]:
                    matrix[i] = [state.rejected[r] for r in REASONS]
            matrix.flags.writeable = False
            self._matrix, self._totals = matrix, totals
        return self._matrix
