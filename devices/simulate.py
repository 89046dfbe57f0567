"""python -m devices.simulate: real-protocol devices for the fleet's device sensors, fed by the load model.

Stands in for the hardware only: what it sends is what a Shelly, a Tasmota plug
or a Linky sends, at their cadence, so the exporter's real parsers and
connections are what is exercised.
- Shelly Gen2 (status notifications, `<prefix>/status/<component>`): on every
  change of power, and a full status every 60 s; a Pro 3EM (`em:0`) sends its
  energy (`emdata:0`) once a minute, as the device does.
- Tasmota: `tele/<topic>/SENSOR` every `--tasmota-period` seconds (TelePeriod).
- Linky TIC: a frame about every 1.2 s (standard) or 1.5 s (historic), written
  to a pseudo-terminal linked at the fleet entry's `port`.

The ground truth is the load model of the fleet entry (its seed, index, home):
power is the model's watts; the index is the model's exact counter in Wh; a
Linky's apparent power is the active power over a power factor of 0.95.  Each
message sent can be journalled (`--journal`, JSON lines) for tests to compare
with what Prometheus stored.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import select
import signal
import sys
import time
import tty
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import paho.mqtt.client as paho

from devices import mqtt, shelly, tasmota, tic
from devices.hub import port_path
from homewatt.fleet import FleetError, Sensor, load_fleet
from homewatt.live import LiveFleet
from homewatt.meter import Ledger
from homewatt.procs import die_with_parent

log = logging.getLogger("devices.simulate")

POWER_FACTOR = 0.95  # the simulated Linky's VA = W / this
SHELLY_FULL_EVERY_S = 60
TIC_PERIOD_S = {tic.HISTORIC: 1.5, tic.STANDARD: 1.2}


class TicLine:
    """A pseudo-terminal standing in for a TIC dongle, linked at a fixed path.

    `reopen()` closes it and opens a new one at the same path: to the reader, an
    unplugged and replugged dongle.  A pseudo-terminal, unlike a dongle, cannot be set
    to 7E1 again once its reader has closed it (tcsetattr fails with EINVAL), so when
    the reader closes it (an exporter or its device reader restarting), the next write
    replugs it: the reader's retry then opens the new one.
    """

    def __init__(self, link: Path):
        self.link = link
        self.master = -1
        self._had_reader = False  # a reader has had the line open since it was (re)plugged
        self.open()

    def _reader_gone(self) -> bool:
        """Whether the reader that had the line open closed it (the master hangs up while no
        one has the other end open, before the first reader too)."""
        poll = select.poll()
        poll.register(self.master, select.POLLHUP)
        hung_up = bool(poll.poll(0))
        self._had_reader = self._had_reader or not hung_up
        return self._had_reader and hung_up

    def open(self) -> None:
        self._had_reader = False
        self.master, slave = os.openpty()
        # A full line with no reader (the exporter's reader restarting) drops the frame, as a
        # dongle's bytes go nowhere; a blocking write would stall every device simulated here.
        os.set_blocking(self.master, False)
        tty.setraw(slave)
        name = os.ttyname(slave)
        os.close(slave)  # the reader opens it by name, as it would a dongle
        self.link.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.link.with_name(self.link.name + ".tmp")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(name)
        tmp.replace(self.link)

    def write(self, data: bytes) -> None:
        if self.master >= 0 and self._reader_gone():
            self.reopen()
        os.write(self.master, data)

    def close(self) -> None:
        if self.master >= 0:
            os.close(self.master)
            self.master = -1
        self.link.unlink(missing_ok=True)

    def reopen(self) -> None:
        self.close()
        self.open()


class Journal:
    def __init__(self, path: str | None):
        self.file: IO[str] | None = open(path, "a", buffering=1) if path else None  # noqa: SIM115

    def write(self, sensor: str, **fields: Any) -> None:
        if self.file is not None:
            self.file.write(json.dumps({"sensor": sensor, "t": round(time.time(), 3), **fields}) + "\n")


class Simulator:
    def __init__(self, sensors: Sequence[Sensor], data: Path, journal: Journal, tasmota_period: int):
        self.sensors = tuple(sensors)
        self.live = LiveFleet(self.sensors, Ledger(self.sensors, data / "ledger"))
        self.journal = journal
        self.tasmota_period = tasmota_period
        self.lines: dict[str, TicLine] = {}
        self.next_frame: dict[str, float] = {}
        self.last_power: dict[str, float] = {}
        self.clients: dict[str, paho.Client] = {}
        for s in self.sensors:
            assert s.device is not None
            if s.device.is_mqtt:
                assert s.device.broker is not None
                if s.device.broker not in self.clients:
                    self.clients[s.device.broker] = mqtt.client(
                        s.device.broker, f"homewatt-simulator-{len(self.clients)}"
                    )
            else:
                assert s.device.port is not None
                self.lines[s.id] = TicLine(port_path(s.device.port, data))
                self.next_frame[s.id] = 0.0

    def publish(self, sensor: Sensor, topic: str, payload: dict[str, Any]) -> None:
        assert sensor.device is not None and sensor.device.broker is not None
        self.clients[sensor.device.broker].publish(topic, json.dumps(payload), qos=1)

    def second(self, t: int) -> None:
        """Everything the devices send during second `t` (the model's power at t, its counter at t)."""
        power, energy = self.live.at(t)
        for i, s in enumerate(self.sensors):
            assert s.device is not None
            w, wh = float(power[i]), float(energy[i]) / 3600.0
            if s.device.format == "shelly":
                self._shelly(s, t, w, wh)
            elif s.device.format == "tasmota" and t % self.tasmota_period == 0:
                total_kwh = round(wh / 1000.0, 3)  # Tasmota's default EnergyRes: 1 Wh
                msg = tasmota.sensor_message(power_w=w, total_kwh=total_kwh, t=t, tz=s.timezone)
                self.publish(s, f"tele/{s.device.topic}/SENSOR", msg)
                self.journal.write(s.id, power_w=w, energy_wh=round(total_kwh * 1000.0, 3))

    def _shelly(self, s: Sensor, t: int, w: float, wh: float) -> None:
        assert s.device is not None
        component = s.device.component
        changed = self.last_power.get(s.id) != w
        full = t % SHELLY_FULL_EVERY_S == 0
        if not (changed or full):
            return
        self.last_power[s.id] = w
        energy_wh = round(wh, 3)
        sent_energy = False
        for name, status in shelly.status(component, power_w=w, energy_wh=energy_wh).items():
            energy_only = "data:" in name  # emdata:0, em1data:N: a meter sends its energy once a minute
            if energy_only and not full:
                continue
            self.publish(s, f"{s.device.topic}/status/{name}", status)
            sent_energy = sent_energy or energy_only or name.split(":")[0] in ("switch", "pm1")
        self.journal.write(s.id, power_w=w, energy_wh=energy_wh if sent_energy else None)

    def frames(self, now: float) -> None:
        """TIC frames due by `now`: the meter's own cadence, not the second's."""
        power, energy = self.live.at(int(now))
        for i, s in enumerate(self.sensors):
            if s.id not in self.lines or now < self.next_frame[s.id]:
                continue
            assert s.device is not None
            mode = s.device.mode
            w, wh = float(power[i]), int(energy[i] // 3600)
            va = round(w / POWER_FACTOR)
            if mode == tic.HISTORIC:
                va = int(round(va, -1))  # PAPP is rounded to 10 VA
                frame = tic.historic_frame(adco=_meter_id(s), papp_va=va, index_wh=wh)
            else:
                frame = tic.standard_frame(adsc=_meter_id(s), sinsts_va=va, east_wh=wh, t=now, tz=s.timezone)
            try:
                self.lines[s.id].write(frame)
            except OSError as exc:  # no reader yet: a dongle's bytes go nowhere too
                log.debug("%s: %s", s.id, exc)
            self.journal.write(s.id, apparent_va=va, energy_wh=wh)
            self.next_frame[s.id] = max(self.next_frame[s.id] + TIC_PERIOD_S[mode], now)

    def run(self) -> None:
        for client in self.clients.values():
            client.loop_start()
        t = int(time.time())
        while True:
            self.second(t)
            while time.time() < t + 1:
                self.frames(time.time())
                time.sleep(min(0.05, max(0.0, t + 1 - time.time())))
            t += 1

    def close(self) -> None:
        for client in self.clients.values():
            client.disconnect()
            client.loop_stop()
        for line in self.lines.values():
            line.close()


def _meter_id(sensor: Sensor) -> str:
    return f"{sensor.seed % 10**12:012d}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devices.simulate", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--fleet", default=os.environ.get("HOMEWATT_FLEET"), help="fleet file (env HOMEWATT_FLEET)"
    )
    parser.add_argument(
        "--data", default=os.environ.get("HOMEWATT_DATA", "./data"), help="data directory (env HOMEWATT_DATA)"
    )
    parser.add_argument(
        "--sensor", action="append", help="simulate these device sensors (default: those marked simulated)"
    )
    parser.add_argument("--journal", help="append every message sent to this JSON-lines file")
    parser.add_argument("--tasmota-period", type=int, default=10, help="Tasmota's TelePeriod, s (default 10)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s simulator %(levelname)s %(message)s")
    die_with_parent()
    try:
        fleet = load_fleet(args.fleet)
    except FleetError as exc:
        print(f"simulator: {exc}", file=sys.stderr)
        return 2
    sensors = [
        s for s in fleet.devices if (s.id in args.sensor if args.sensor else s.device and s.device.simulated)
    ]
    if not sensors:
        print("simulator: the fleet has no device sensor to simulate", file=sys.stderr)
        return 2
    sim = Simulator(sensors, Path(args.data), Journal(args.journal), args.tasmota_period)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    log.info("simulating %s", ", ".join(f"{s.id} ({s.device.format})" for s in sensors if s.device))
    try:
        sim.run()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        sim.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
