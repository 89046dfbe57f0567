"""The exporter reads its devices in a child process (devices/hub.py): what it reads reaches the
scrape through shared memory, and a reader that dies is replaced without losing a count.

One Linky on a pseudo-terminal stands in for the fleet's devices; the whole stack with
MQTT devices and the exporter's real process is in test_devices.py.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from devices import tic
from devices.hub import Devices
from devices.reading import REASONS, TRUNCATED
from devices.simulate import TicLine
from homewatt.fleet import parse_fleet
from homewatt.procs import wait_until

pytestmark = pytest.mark.integration


def reader_pid(devices: Devices) -> int | None:
    return devices._reader


class Linky:
    """A historic-mode Linky writing a frame every 0.2 s; `va` and `garbage` change what it sends."""

    def __init__(self, link: Path):
        self.line = TicLine(link)
        self.va = 450
        self.garbage = 0  # truncated frames still to send
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        index = 2_000_000
        while not self._stop.wait(0.2):
            frame = tic.historic_frame(adco="021728123456", papp_va=self.va, index_wh=index)
            if self.garbage:
                self.garbage -= 1
                frame = frame[: len(frame) // 2] + b"\x02"  # a new STX before the ETX: truncated
            with contextlib.suppress(OSError):
                self.line.write(frame)
            index += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.line.close()


@pytest.fixture
def reader(tmp_path: Path) -> Iterator[tuple[Devices, Linky]]:
    fleet = parse_fleet(
        {
            "timezone": "Europe/Paris",
            "sensors": [
                {
                    "id": "m-tic",
                    "home": "test",
                    "seed": 1,
                    "index_date": dt.date.today().isoformat(),
                    "index_kwh": 1000.0,
                    "device": {"format": "tic", "port": "tic/m-tic", "mode": "historic"},
                }
            ],
        }
    )
    linky = Linky(tmp_path / "tic" / "m-tic")
    devices = Devices(fleet.devices, tmp_path)
    devices.start(process=True)
    try:
        yield devices, linky
    finally:
        devices.stop()
        linky.stop()


def restarts_total() -> float:
    return REGISTRY.get_sample_value("homewatt_exporter_device_reader_restarts_total") or 0.0


def shows(devices: Devices, va: float) -> bool:
    snap = devices.snapshot()
    return bool(snap["apparent"][0] == va and snap["source_up"][0] == 1.0)


def test_what_the_reader_process_reads_reaches_the_snapshot(reader):
    devices, linky = reader
    pid = reader_pid(devices)
    assert pid is not None and pid != os.getpid()
    wait_until(lambda: shows(devices, 450), 30, "the Linky's VA in the exporter's snapshot")
    assert devices.states[0].last_seen is None  # read by the child, not by this process
    linky.va = 1230
    wait_until(lambda: shows(devices, 1230), 10, "the new VA")


def test_a_killed_reader_is_replaced_and_the_counts_carry_on(reader):
    devices, linky = reader
    wait_until(lambda: shows(devices, 450), 30, "the Linky's first frames")
    linky.garbage = 3

    def truncated() -> int:
        return int(devices.snapshot()["rejected"][0, REASONS.index(TRUNCATED)])

    wait_until(lambda: truncated() >= 3, 10, "3 truncated frames counted")
    counted = truncated()
    restarts = restarts_total()
    first = reader_pid(devices)
    assert first is not None
    os.kill(first, signal.SIGKILL)
    wait_until(lambda: devices.snapshot()["source_up"][0] == 0.0, 10, "the source marked down")
    # The last reading is still served within its staleness limit, as when a broker goes away.
    assert devices.snapshot()["apparent"][0] == 450
    linky.va = 980
    wait_until(lambda: shows(devices, 980), 30, "the new reader's frames")
    assert reader_pid(devices) not in (None, first)
    assert restarts_total() == restarts + 1
    assert truncated() == counted  # kept across the restart; nothing garbled since


def test_stopping_the_devices_stops_the_reader(reader):
    devices, _ = reader
    pid = reader_pid(devices)
    assert pid is not None
    devices.stop()

    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    wait_until(gone, 10, "the reader process gone and reaped")
