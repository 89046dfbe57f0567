"""Real-meter sources end to end: a real mosquitto, pseudo-terminals, the simulator, the
exporter and Prometheus, started the way `make up` starts them (stack/services.py).

The simulator journals every message it sends; what Prometheus stored is compared
with that.  Tests run in file order on one stack: the later ones break things (a
flood, a broker restart, an unplugged port) and check that the rest kept going.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import paho.mqtt.client as paho
import pytest
import requests
import yaml

from devices import shelly, tic
from devices.simulate import TicLine
from homewatt import promapi
from homewatt.config import Settings
from homewatt.contract import (
    APPARENT_POWER,
    DEVICE_LAST_SEEN,
    DEVICE_REJECTED,
    DEVICE_SOURCE_UP,
    ENERGY,
    POWER,
)
from homewatt.procs import free_port, wait_until
from homewatt.window import Window
from partner_job import fetch
from stack.services import Stack
from stack.supervisor import Supervisor
from tests.conftest import stack_env, today_utc

pytestmark = pytest.mark.integration

LATENCY = 2.0  # a device's reading is in Prometheus within this many seconds


class Devices:
    def __init__(self, root: Path, settings: Settings, broker_port: int, sup: Supervisor, stack: Stack):
        self.root = root
        self.settings = settings
        self.prom = settings.prometheus_url
        self.broker_port = broker_port
        self.sup = sup
        self.stack = stack
        self.journal = root / "journal.jsonl"
        self.started = time.time()

    def sent(self, sensor: str) -> list[dict]:
        rows = [json.loads(line) for line in self.journal.read_text().splitlines()]
        return [r for r in rows if r["sensor"] == sensor]

    def samples(self, metric: str, sensor: str, seconds: int = 60) -> np.ndarray:
        """(timestamp, value) rows of the raw samples Prometheus stored over the last `seconds`."""
        got = promapi.query(self.prom, f'{metric}{{sensor="{sensor}"}}[{seconds}s]')
        if not got:
            return np.empty((0, 2))
        return np.array([(float(t), float(v)) for t, v in got[0]["values"]])

    def exporter_value(self, metric: str, **labels: str) -> float | None:
        text = requests.get(f"http://{self.settings.exporter_listen}/metrics", timeout=5).text
        want = metric + ("{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else "")
        for line in text.splitlines():
            if line.startswith(want + " "):
                return float(line.split()[-1])
        return None

    def fresh(self) -> set[str]:
        got = promapi.query(self.prom, f"time() - timestamp({POWER.name}) <= 2")
        return {r["metric"]["sensor"] for r in got}

    def publisher(self) -> paho.Client:
        client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"test-{time.time_ns()}")
        client.connect("127.0.0.1", self.broker_port)
        client.loop_start()
        return client

    def log(self, name: str) -> str:
        return (self.settings.data / "logs" / f"{name}.log").read_text(errors="replace")


def fleet_doc(broker: str) -> dict:
    day = today_utc().isoformat()

    def device(sensor: str, seed: int, **dev: object) -> dict:
        return {
            "id": sensor,
            "home": "test",
            "seed": seed,
            "index_date": day,
            "index_kwh": 1000.0,
            "device": dev,
        }

    return {
        "timezone": "Europe/Paris",
        "sensors": [
            {"id": "s-001", "home": "modelled", "seed": 101, "index_date": day, "index_kwh": 31250.4},
            device(
                "m-shelly", 11, format="shelly", broker=broker, topic="shellyplus1pm-test", simulated=True
            ),
            # TelePeriod 10 s (the simulator's): a staleness limit above it.
            device(
                "m-tas",
                12,
                format="tasmota",
                broker=broker,
                topic="plug-test",
                simulated=True,
                stale_after_s=15,
            ),
            device("m-tic", 13, format="tic", port="tic/m-tic", mode="standard", simulated=True),
            device("m-hist", 14, format="tic", port="tic/m-hist", mode="historic"),  # driven by the test
            device("m-reset", 15, format="shelly", broker=broker, topic="shelly-reset"),
            device("m-flood", 16, format="shelly", broker=broker, topic="shelly-flood"),
        ],
    }


@pytest.fixture(scope="module")
def devices(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devices]:
    root = tmp_path_factory.mktemp("devices")
    port = free_port()
    fleet_file = root / "fleet.yaml"
    fleet_file.write_text(yaml.safe_dump(fleet_doc(f"mqtt://127.0.0.1:{port}"), sort_keys=False))
    settings = Settings.from_env({**os.environ, **stack_env(root / "data", fleet_file)})
    stack = Stack(settings)
    with Supervisor(stack.data / "logs") as sup:
        d = Devices(root, settings, port, sup, stack)
        for service in (
            stack.mosquitto("127.0.0.1", port),
            stack.simulator(d.journal),
            stack.exporter(),
            stack.prometheus(standalone=True),
        ):
            sup.run(service)
        d.started = time.time()
        yield d


def test_the_default_stack_runs_a_broker_and_the_simulator_for_the_default_fleet(tmp_path: Path):
    names = [s.name for s in Stack(Settings.from_env({"HOMEWATT_DATA": str(tmp_path)})).device_services()]
    assert names == ["mosquitto", "simulator"]


def test_device_readings_reach_prometheus_within_2_s_as_sent(devices: Devices):
    """Every stored sample is the value the device last sent (give or take the 2 s a message
    may be in transit); nearly every value sent is stored (one superseded within the same
    scrape interval may not be)."""
    wait_until(lambda: time.time() - devices.started > 45, 60, "45 s of data")
    cases = [
        ("m-shelly", POWER.name, "power_w", 0.9),
        ("m-tas", POWER.name, "power_w", 1.0),
        ("m-tic", APPARENT_POWER.name, "apparent_va", 0.9),
    ]
    for sensor, metric, field, coverage in cases:
        stored = devices.samples(metric, sensor, 40)
        sent = [(r["t"], r[field]) for r in devices.sent(sensor) if r.get(field) is not None]
        assert len(stored) >= 30, (sensor, stored)
        for ts, value in stored:
            # The value held since before the last 2 s, or one sent within them (in transit).
            held = [v for t, v in sent if t < ts - LATENCY][-1:]
            recent = {v for t, v in sent if ts - LATENCY <= t <= ts} | set(held)
            assert value in recent, (sensor, ts, value, recent)
        window = [(t, v) for t, v in sent if stored[0, 0] <= t <= stored[-1, 0] - LATENCY]
        seen = [any(t < ts <= t + LATENCY and v == value for ts, value in stored) for t, v in window]
        assert window and sum(seen) >= coverage * len(window), (sensor, sum(seen), len(window))


def test_the_energy_counter_is_the_device_s_index(devices: Devices):
    """Each stored counter sample is an index the device sent, in joules: its delta over
    any span is the index delta, and nothing is made up in between."""
    for sensor in ("m-shelly", "m-tas", "m-tic"):
        stored = devices.samples(ENERGY.name, sensor, 40)
        sent = {
            round(r["energy_wh"] * 3600.0, 3) for r in devices.sent(sensor) if r.get("energy_wh") is not None
        }
        assert len(stored) >= 30
        assert set(stored[:, 1]) <= sent, sensor
        assert np.all(np.diff(stored[:, 1]) >= 0)
        sent_wh = [r["energy_wh"] for r in devices.sent(sensor) if r.get("energy_wh") is not None]
        assert stored[-1, 1] - stored[0, 1] <= (max(sent_wh) - min(sent_wh)) * 3600 + 1e-6


def test_a_linky_serves_apparent_power_and_no_made_up_active_power(devices: Devices):
    va = devices.samples(APPARENT_POWER.name, "m-tic", 30)
    assert len(va) >= 20
    # Active power only once its index has counted 20 Wh; then VA x the meter's own power factor.
    watts = devices.samples(POWER.name, "m-tic", 30)
    sent = devices.sent("m-tic")
    counted = sent[-1]["energy_wh"] - sent[0]["energy_wh"]
    if counted < 20:
        assert len(watts) == 0
    else:
        assert np.all(watts[:, 1] <= max(r["apparent_va"] for r in sent))


def test_a_device_s_silent_minutes_go_to_the_partner_as_null(devices: Devices):
    end = dt.datetime.fromtimestamp((int(time.time()) // 60) * 60, dt.UTC)
    window = Window(end=end, start=end - dt.timedelta(minutes=10))
    wait_until(lambda: time.time() >= end.timestamp() + 3, 10, "the minute's sample")
    values = fetch.minute_wh(fetch.counter_readings(devices.prom, "m-shelly", window))
    first = int(devices.started - window.start_ts) // 60  # the minute the device first reported in
    assert values[: first - 1] == [None] * (first - 1)
    reported = [v for v in values[first + 1 :] if v is not None]
    assert len(reported) == len(values[first + 1 :]) and all(v >= 0 for v in reported)


def test_a_counter_reset_is_served_as_a_reset(devices: Devices):
    client = devices.publisher()
    topic = "shelly-reset/status/switch:0"
    for energy in (5000.0, 5000.0, 5000.5, 10.0, 10.0, 10.25):
        for _ in range(3):
            status = shelly.status("switch:0", power_w=100.0, energy_wh=energy)["switch:0"]
            client.publish(topic, json.dumps(status), qos=1).wait_for_publish(5)
            time.sleep(0.5)
    client.loop_stop()
    time.sleep(LATENCY)
    expr = f'resets({ENERGY.name}{{sensor="m-reset"}}[1m])'
    assert float(promapi.query(devices.prom, expr)[0]["value"][1]) == 1
    stored = devices.samples(ENERGY.name, "m-reset", 30)[:, 1]
    assert stored.max() == 5000.5 * 3600 and stored[-1] == 10.25 * 3600


def test_a_flood_of_bad_messages_is_counted_and_every_other_sensor_stays_served(devices: Devices):
    client = devices.publisher()
    others = {"s-001", "m-shelly", "m-tas"}
    assert others <= devices.fresh()
    for i in range(10_000):
        client.publish("shelly-flood/status/switch:0", b"{not json" if i % 2 else b'{"apower": NaN}', qos=0)
    fresh_during: list[set[str]] = []

    def all_counted() -> bool:
        fresh_during.append(devices.fresh())
        bad = [
            devices.exporter_value(DEVICE_REJECTED.name, sensor="m-flood", reason=r)
            for r in ("not_json", "nan")
        ]
        return bad == [5000.0, 5000.0]

    wait_until(all_counted, 60, "10,000 rejected messages counted")
    client.loop_stop()
    assert all(others <= fresh for fresh in fresh_during), fresh_during
    assert devices.exporter_value(POWER.name, sensor="m-flood") is None  # nothing served from them
    assert devices.log("exporter").count("m-flood: dropped a reading") == 2  # once per reason, then counted


def test_a_broker_restart_goes_stale_then_reconnects(devices: Devices):
    (broker,) = [s for s in devices.sup.services if s.name.startswith("mosquitto")]
    seen_before = devices.exporter_value(DEVICE_LAST_SEEN.name, sensor="m-shelly")
    devices.sup.stop_one(broker)
    stopped = time.time()

    def stale() -> bool:
        return "m-shelly" not in devices.fresh() and not promapi.query(
            devices.prom, f'{POWER.name}{{sensor="m-shelly"}}'
        )

    # Silent longer than its 10 s limit: the sensor drops out and Prometheus marks it stale.
    wait_until(stale, 30, "m-shelly stale in Prometheus")
    assert time.time() - stopped >= 10 - LATENCY
    assert devices.exporter_value(DEVICE_LAST_SEEN.name, sensor="m-shelly") == pytest.approx(
        seen_before, abs=2
    )
    assert "s-001" in devices.fresh()  # the model's sensors never noticed
    devices.sup.run(devices.stack.mosquitto("127.0.0.1", devices.broker_port))
    back = time.time()
    wait_until(lambda: "m-shelly" in devices.fresh(), 90, "m-shelly back after the broker restart")
    log = devices.log("exporter")
    assert log.count(f"MQTT broker 127.0.0.1:{devices.broker_port} lost") == 1  # logged once, not per retry
    assert f"MQTT broker 127.0.0.1:{devices.broker_port} is back" in log
    assert time.time() - back < 70


def test_an_unplugged_tic_port_is_reopened(devices: Devices):
    line = TicLine(devices.settings.data / "tic" / "m-hist")
    va = {"value": 450}
    stop = threading.Event()

    def write() -> None:
        index = 2_000_000
        while not stop.is_set():
            if line.master >= 0:
                with contextlib.suppress(OSError):
                    line.write(tic.historic_frame(adco="021728123456", papp_va=va["value"], index_wh=index))
            index += 1
            stop.wait(1.5)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:

        def shows(value: int) -> bool:
            got = promapi.query(devices.prom, f'{APPARENT_POWER.name}{{sensor="m-hist"}}')
            return bool(got) and float(got[0]["value"][1]) == value

        # The port was missing since the start: the reader retries it every 30 s at most.
        wait_until(lambda: shows(450), 45, "m-hist's first frames in Prometheus")
        line.close()  # unplugged
        time.sleep(3)
        va["value"] = 1230
        line.open()  # plugged back in: a new pty at the same path
        wait_until(lambda: shows(1230), 60, "m-hist back after the port was reopened")
        # Read before the line closes below: that close is a second unplugging, logged too.
        log = devices.log("exporter")
    finally:
        stop.set()
        writer.join()
        line.close()
    assert log.count("tic/m-hist went away") == 1
    assert "reading TIC (historic mode) from" in log and " again" in log


def test_a_killed_device_reader_is_started_again_and_loses_no_count(devices: Devices):
    """The exporter reads its devices in a child process: killing it stops neither the modelled
    sensors nor the exporter, a new reader takes over, and the rejection counts carry on."""
    (exporter,) = [s for s in devices.sup.services if s.name == "exporter"]
    assert exporter.process is not None
    pid = exporter.process.pid

    def reader() -> int | None:
        children = " ".join(p.read_text() for p in Path(f"/proc/{pid}/task").glob("*/children"))
        return int(children.split()[0]) if children.split() else None

    first = reader()
    assert first is not None, "the exporter has no device reader process"
    flood = devices.exporter_value(DEVICE_REJECTED.name, sensor="m-flood", reason="not_json")
    assert flood == 5000.0  # the flood test's, counted by the first reader
    os.kill(first, 9)
    killed = time.time()
    wait_until(lambda: reader() not in (None, first), 30, "a new device reader")
    restarted = time.time()
    assert exporter.process.poll() is None  # the exporter itself never stopped
    assert "s-001" in devices.fresh()

    def heard_since_restart() -> bool:
        seen = [
            devices.exporter_value(DEVICE_LAST_SEEN.name, sensor=s) for s in ("m-shelly", "m-tas", "m-tic")
        ]
        return all(t is not None and t > restarted for t in seen)

    # MQTT devices, and the simulated Linky's line, which the simulator replugs once the dead
    # reader's end closed (a pseudo-terminal cannot be opened as 7E1 again).
    wait_until(heard_since_restart, 60, "every simulated device heard by the new reader")
    assert {"m-shelly", "m-tas"} <= devices.fresh()  # the Linky's active power waits for a new estimate
    assert time.time() - killed < 60
    assert devices.exporter_value(DEVICE_REJECTED.name, sensor="m-flood", reason="not_json") == 5000.0
    assert devices.exporter_value("homewatt_exporter_device_reader_restarts_total") == 1.0
    assert (
        devices.exporter_value(DEVICE_SOURCE_UP.name, source=f"mqtt://127.0.0.1:{devices.broker_port}") == 1.0
    )
    assert f"device reader (pid {first}) exited (killed by signal 9)" in devices.log("exporter")
