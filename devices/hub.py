"""Every device sensor of a fleet, its source started and its values ready for a scrape."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from devices.mqtt import MqttSource, source_label
from devices.reading import REASONS
from devices.state import DeviceState
from devices.ticport import TicPort
from homewatt.fleet import Device, Sensor

NAN = float("nan")


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
        """
        now = self.clock() if now is None else now
        values = [state.values(now) for state in self.states]

        def column(name: str) -> np.ndarray:
            return np.array(
                [NAN if getattr(v, name) is None else getattr(v, name) for v in values], dtype=float
            )

        return {
            "power": column("power_w"),
            "apparent": column("apparent_va"),
            "energy": column("energy_j"),
            "last_seen": column("last_seen"),
            "source_up": np.array([float(s.up) for s in self.sources]),
            "rejected": np.array(
                [[s.rejected[r] for r in REASONS] for s in self.states], dtype=np.int64
            ).reshape(len(self.states), len(REASONS)),
        }
