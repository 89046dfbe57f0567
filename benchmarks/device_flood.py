"""Scrape time of the exporter while a device floods it with bad messages.

Starts a real mosquitto and the real exporter (as `make up` does) with the default
fleet's modelled homes, one Shelly that reports normally, and one Shelly whose topic
receives 10,000 malformed messages (half not JSON, half a NaN power).  Prints the
/metrics time seen by an HTTP client, idle and during the flood, and how long the
exporter took to count them all.  Goal: a scrape under 50 ms during the flood.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
import requests
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devices import shelly  # noqa: E402
from homewatt.config import Settings  # noqa: E402
from homewatt.fleet import DEFAULT_FLEET  # noqa: E402
from homewatt.procs import free_port, wait_until  # noqa: E402
from stack.services import Stack  # noqa: E402
from stack.supervisor import Supervisor  # noqa: E402

FLOOD = 10_000


def scrape_times(url: str, stop: threading.Event, out: list[float]) -> None:
    with requests.Session() as session:
        while not stop.is_set():
            start = time.perf_counter()
            session.get(url, timeout=5).raise_for_status()
            out.append(time.perf_counter() - start)
            stop.wait(0.2)


def summary(label: str, times: list[float]) -> str:
    ms = sorted(t * 1000 for t in times)
    p99 = ms[min(len(ms) - 1, int(0.99 * len(ms)))]
    return f"{label:<22} {len(ms):>7} {statistics.median(ms):>10.1f} {p99:>8.1f} {ms[-1]:>8.1f}"


def flood(port: int) -> None:
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="bench-flood")
    client.connect("127.0.0.1", port)
    client.loop_start()
    for i in range(FLOOD):
        info = client.publish(
            "bench-flood/status/switch:0", b"{not json" if i % 2 else b'{"apower": NaN}', qos=0
        )
    info.wait_for_publish(60)
    client.disconnect()
    client.loop_stop()


def main() -> None:
    if sys.argv[1:2] == ["--flood"]:
        flood(int(sys.argv[2]))
        return
    root = Path(tempfile.mkdtemp(prefix="homewatt-flood-"))
    port = free_port()
    broker = f"mqtt://127.0.0.1:{port}"
    doc = yaml.safe_load(DEFAULT_FLEET.read_text())
    doc["sensors"] = [s for s in doc["sensors"] if "device" not in s]
    for topic in ("bench-good", "bench-flood"):
        doc["sensors"].append(
            {
                "id": f"m-{topic}",
                "home": "bench",
                "device": {"format": "shelly", "broker": broker, "topic": topic},
            }
        )
    (root / "fleet.yaml").write_text(yaml.safe_dump(doc))
    settings = Settings.from_env(
        {
            **os.environ,
            "HOMEWATT_DATA": str(root / "data"),
            "HOMEWATT_FLEET": str(root / "fleet.yaml"),
            "EXPORTER_LISTEN": f"127.0.0.1:{free_port()}",
        }
    )
    stack = Stack(settings)
    url = f"http://{settings.exporter_listen}/metrics"
    with Supervisor(root / "logs") as sup:
        sup.run(stack.mosquitto("127.0.0.1", port))
        sup.run(stack.exporter())
        client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="bench")
        client.connect("127.0.0.1", port)
        client.loop_start()
        good = shelly.status("switch:0", power_w=500.0, energy_wh=1000.0)["switch:0"]
        client.publish("bench-good/status/switch:0", json.dumps(good), qos=1).wait_for_publish(5)

        idle: list[float] = []
        stop = threading.Event()
        t = threading.Thread(target=scrape_times, args=(url, stop, idle))
        t.start()
        time.sleep(5)
        stop.set()
        t.join()

        during: list[float] = []
        stop = threading.Event()
        t = threading.Thread(target=scrape_times, args=(url, stop, during))
        t.start()
        start = time.perf_counter()
        # From a process of its own, so that publishing does not slow the measuring client.
        publisher = subprocess.Popen([sys.executable, __file__, "--flood", str(port)])

        def counted() -> bool:
            text = requests.get(url, timeout=5).text
            lines = [
                ln
                for ln in text.splitlines()
                if ln.startswith('homewatt_device_rejected_total{sensor="m-bench-flood"')
            ]
            return sum(float(ln.split()[-1]) for ln in lines) >= FLOOD

        wait_until(counted, 120, f"{FLOOD} rejected messages counted")
        took = time.perf_counter() - start
        publisher.wait()
        time.sleep(1)
        stop.set()
        t.join()
        client.loop_stop()
        good_served = 'elec_power_watts{sensor="m-bench-good"}' in requests.get(url, timeout=5).text
    print(f"{'/metrics':<22} {'scrapes':>7} {'median ms':>10} {'p99 ms':>8} {'max ms':>8}")
    print(summary("idle", idle))
    print(summary(f"during {FLOOD:,} bad msgs", during))
    print(
        f"{FLOOD:,} bad messages counted in {took:.1f} s ({FLOOD / took:,.0f}/s); the good Shelly still served: {good_served}"
    )
    print(f"(exporter log: {root / 'logs' / 'exporter.log'})")


if __name__ == "__main__":
    main()
