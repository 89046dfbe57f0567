"""A Linky's TIC output, read from the serial port of a USB TIC dongle with pyserial.

The port is opened 7E1 at the mode's speed (1200 baud historic, 9600 standard).
A dongle that is unplugged, or a pseudo-terminal whose other end closes, makes
the read fail: the reader logs it once, closes the port and reopens it with a
backoff (1 s doubling to 30 s) until it is back; the first frame after every
open is partial and is dropped without a count, as the decoder does at start.
"""

from __future__ import annotations

import logging
import termios
import threading
from pathlib import Path

import serial

from devices import tic
from devices.reading import Rejected
from devices.state import DeviceState

log = logging.getLogger(__name__)

BACKOFF_MAX_S = 30.0


class TicPort:
    def __init__(self, path: str | Path, mode: str, state: DeviceState, name: str | None = None):
        self.path = str(path)
        self.name = name or f"tic:{self.path}"  # the source label
        self.mode = mode
        self.state = state
        self._stop = threading.Event()
        self.up = False  # the port is open: homewatt_device_source_up
        self._thread = threading.Thread(target=self._run, name=f"tic {self.path}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _open(self) -> serial.Serial:
        return serial.Serial(
            self.path,
            baudrate=tic.BAUDRATE[self.mode],
            bytesize=serial.SEVENBITS,
            parity=serial.PARITY_EVEN,
            stopbits=serial.STOPBITS_ONE,
            timeout=0.5,
        )

    def _run(self) -> None:
        delay, lost = 1.0, False
        while not self._stop.is_set():
            try:
                port = self._open()
            except (serial.SerialException, OSError, termios.error) as exc:
                if not lost:
                    log.warning(
                        "%s: cannot open %s (%s); retrying with backoff up to %.0f s",
                        self.state.sensor_id,
                        self.path,
                        exc,
                        BACKOFF_MAX_S,
                    )
                lost = True
                self._stop.wait(delay)
                delay = min(delay * 2, BACKOFF_MAX_S)
                continue
            log.info(
                "%s: reading TIC (%s mode) from %s%s",
                self.state.sensor_id,
                self.mode,
                self.path,
                " again" if lost else "",
            )
            delay, lost = 1.0, False
            self.up = True
            try:
                self._read(port)
            except (serial.SerialException, OSError, termios.error) as exc:
                log.warning(
                    "%s: %s went away (%s); reopening with backoff up to %.0f s",
                    self.state.sensor_id,
                    self.path,
                    exc,
                    BACKOFF_MAX_S,
                )
                lost = True
            finally:
                self.up = False
                port.close()

    def _read(self, port: serial.Serial) -> None:
        decoder = tic.TicDecoder(self.mode)
        while not self._stop.is_set():
            data = port.read(max(1, port.in_waiting))
            for item in decoder.feed(data):
                if isinstance(item, Rejected):
                    self.state.reject(item)
                else:
                    self.state.offer(item)
