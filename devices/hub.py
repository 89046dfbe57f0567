"""Every device sensor of a fleet, its source started and its values ready for a scrape.

The exporter reads its devices in a process of its own (`start(process=True)`).
Their messages arrive in bursts, a thousand devices' worth at once, and each is
parsed in Python: in the scrape's process, those threads would take the GIL
from the scrape at every socket write and zlib call, and with both cores busy
a thread holding it can be off the CPU for milliseconds.  The reader process
is forked before any thread starts and shares only anonymous memory with the
exporter: the table of served values, the rejection counts and the sources'
state, written under one lock that lives in that memory too.  If the reader
dies, the exporter marks its sources down, logs it, and forks a new one
(backoff 1 s doubling to 60 s); the new reader starts from empty device states
(a reading's index checks start over), the rejection counts carry on.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from prometheus_client import Counter

from devices.mqtt import MqttSource, source_label
from devices.reading import REASONS
from devices.state import DeviceState
from devices.ticport import TicPort
from homewatt.fleet import Device, Sensor
from homewatt.procs import die_with_parent

log = logging.getLogger(__name__)

READER_RESTARTS = Counter(
    "homewatt_exporter_device_reader_restarts",
    "Times the device reader process died and a new one was started.",
)
UP_EVERY_S = 0.1  # how often the reader copies its sources' state into the shared memory
BACKOFF_MAX_S = 60.0


def port_path(port: str, data: Path) -> Path:
    """A relative TIC port is under the data directory, where the simulator links its pty."""
    return Path(port) if Path(port).is_absolute() else data / port


def source_name(device: Device) -> str:
    """The `source` label: the broker without its credentials, or the port as the fleet names it."""
    if device.is_mqtt:
        assert device.broker is not None
        return source_label(device.broker)
    return f"tic:{device.port}"


def shared(shape: tuple[int, ...], dtype: type, fill: float = 0) -> np.ndarray:
    """An array in anonymous shared memory: a process forked after this sees the same bytes."""
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
    buf = mmap.mmap(-1, max(size, 1), flags=mmap.MAP_SHARED)
    array: np.ndarray = np.frombuffer(buf, dtype=dtype, count=int(np.prod(shape))).reshape(shape)
    array[...] = fill
    return array


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
        # What the states write and a scrape reads, in memory a reader process shares:
        # (power, apparent, energy J, last seen) per device, NaN for none; the rejection
        # counts per device and reason; whether each source is up (1.0) or not.
        self._table = shared((len(self.states), 4), float, np.nan)
        self._counts = shared((len(self.states), len(REASONS)), np.int64)
        self._up = shared((len(self.sources),), float)
        self._lock = multiprocessing.get_context("fork").Lock()
        self._stale_after = np.array([st.device.stale_after_s for st in self.states], dtype=float)
        for state, row, counts in zip(self.states, self._table, self._counts, strict=True):
            state.share(row, counts, self._lock)
        self._reader: int | None = None  # the reader process, when the sources run in one
        self._stopping = threading.Event()

    def __len__(self) -> int:
        return len(self.sensors)

    def start(self, process: bool = False) -> None:
        """Start the sources: in this process's threads, or in a reader process (`process`)."""
        if not process:
            for source in self.sources:
                source.start()
            return
        if not self.sources:
            return
        self._reader = self._fork()
        threading.Thread(target=self._watch, name="device reader watch", daemon=True).start()

    def stop(self) -> None:
        self._stopping.set()
        if self._reader is None:
            for source in self.sources:
                source.stop()
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self._reader, signal.SIGTERM)

    def _fork(self) -> int:
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the reader: nothing but the sources, until the exporter goes
            code = 1
            try:
                self._read(parent)
                code = 0
            except BaseException:
                log.exception("device reader failed")
            finally:
                os._exit(code)
        log.info("device reader started (pid %d): %d sources, %d devices", pid, len(self.sources), len(self))
        return pid

    def _read(self, parent: int) -> None:
        # Stopped by the exporter's SIGTERM or its death, not by its handlers (inherited by a
        # reader forked after they were set) nor by a Ctrl-C the exporter handles itself.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        die_with_parent()
        for source in self.sources:
            source.start()
        while os.getppid() == parent:
            up = [float(s.up) for s in self.sources]
            with self._lock:
                self._up[:] = up
            time.sleep(UP_EVERY_S)

    def _watch(self) -> None:
        """Wait for the reader; if it dies while the exporter runs, start another."""
        delay = 1.0
        while self._reader is not None:
            started = time.monotonic()
            _, status = os.waitpid(self._reader, 0)
            if self._stopping.is_set():
                return
            # The reader may have died holding the lock; a scrape holds it for microseconds, so
            # one not free within a second is the dead reader's, and taking it over is safe.
            if not self._lock.acquire(timeout=1.0):
                log.warning("the device reader died holding the shared table's lock; taken over")
            try:
                self._up[:] = 0.0  # nothing is read any more: every source is down
            finally:
                self._lock.release()
            delay = 1.0 if time.monotonic() - started > 600 else delay  # it had run a while
            log.error(
                "device reader (pid %d) exited (%s); starting a new one in %.0f s",
                self._reader,
                _exit_status(status),
                delay,
            )
            READER_RESTARTS.inc()
            if self._stopping.wait(delay):
                return
            delay = min(delay * 2, BACKOFF_MAX_S)
            self._reader = self._fork()

    def snapshot(self, now: float | None = None) -> dict[str, np.ndarray]:
        """Per device sensor: power, apparent power, energy (J), last seen; NaN = leave the line out.

        `rejected` is a (sensors x REASONS) count matrix; `source_up` is per source (`sources`).
        Every scrape asks, so it costs no Python per device: each state keeps its row of the
        shared table and its rejection counts up to date (DeviceState.share), the scrape
        copies them, and staleness is one vector comparison.
        """
        now = self.clock() if now is None else now
        with self._lock:
            table, rejected, up = self._table.copy(), self._counts.copy(), self._up.copy()
        if self._reader is None:  # the sources run here: their state is at hand
            up = np.array([float(s.up) for s in self.sources])
        # Silent too long, or never heard: nothing but when it was last heard (NaN compares false).
        stale = ~(now - table[:, 3] <= self._stale_after)
        table[stale, :3] = np.nan
        return {
            "power": table[:, 0],
            "apparent": table[:, 1],
            "energy": table[:, 2],
            "last_seen": table[:, 3],
            "source_up": up,
            "rejected": rejected,
        }


def _exit_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit code {os.waitstatus_to_exitcode(status)}"
