"""python -m exporter: serve the fleet's live power and energy on /metrics."""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from devices.hub import Devices
from exporter.server import MetricsApp, serve
from homewatt.fleet import Fleet, FleetError, load_fleet
from homewatt.httpserver import serve_until_stopped
from homewatt.live import LiveFleet
from homewatt.meter import Ledger

# How long a thread may hold the GIL while another waits for it (Python's default: 5 ms).
# A scrape lets go of the GIL for every socket write and zlib call, and each time waits
# for the device threads' turn to end: at 10,000 sensors with 1,000 devices, 5 ms made
# the p99 scrape 53 ms, 0.5 ms made it 20 ms (benchmarks/exporter_render.py, docs/capacity.md).
SWITCH_INTERVAL_S = 0.0005


def start(fleet: Fleet, data: Path, clock: Callable[[], float] = time.time) -> tuple[MetricsApp, Devices]:
    """The app `main` serves: the modelled sensors at the current second, the devices' sources
    started.  Everything built so far lives as long as the process, so it is moved out of
    the garbage collector's sight (gc.freeze): at 10,000 sensors a full collection would
    otherwise walk it all, holding up whatever scrape is running for 0.1 s and more.  The
    GIL changes hands more often than Python's default (SWITCH_INTERVAL_S), for the same
    reason, and the devices are read in a process of their own (devices/hub.py), forked
    here, before any thread starts."""
    log = logging.getLogger("exporter")
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    modelled = fleet.modelled
    live = LiveFleet(modelled, Ledger(modelled, data / "ledger"))
    began = time.perf_counter()
    live.at(int(clock()))  # fills the energy ledger before the first scrape
    log.info("%d modelled sensors ready in %.1f s", len(modelled), time.perf_counter() - began)
    devices = Devices(fleet.devices, data, clock)
    app = MetricsApp(live, devices, clock)
    gc.collect()
    gc.freeze()
    devices.start(process=True)
    if len(devices):
        log.info(
            "%d device sensors: %s",
            len(devices),
            ", ".join(f"{s.id} ({s.device.format})" for s in devices.sensors if s.device),
        )
    return app, devices


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m exporter", description=__doc__)
    parser.add_argument(
        "--listen",
        default=os.environ.get("EXPORTER_LISTEN", "127.0.0.1:9105"),
        help="host:port to serve /metrics on (env EXPORTER_LISTEN)",
    )
    parser.add_argument(
        "--fleet",
        default=os.environ.get("HOMEWATT_FLEET"),
        help="fleet YAML file (env HOMEWATT_FLEET; default: the bundled fleet)",
    )
    parser.add_argument(
        "--data",
        default=os.environ.get("HOMEWATT_DATA", "./data"),
        help="data directory; the energy ledger is cached under it (env HOMEWATT_DATA)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s exporter %(levelname)s %(message)s")
    log = logging.getLogger("exporter")
    try:
        fleet = load_fleet(args.fleet)
    except FleetError as exc:
        print(f"exporter: refusing to start: {exc}", file=sys.stderr)
        return 2
    host, _, port = args.listen.rpartition(":")
    app, devices = start(fleet, Path(args.data))
    server = serve(app, host or "127.0.0.1", int(port))
    log.info("serving http://%s:%s/metrics", host, port)
    try:
        serve_until_stopped(server)
    finally:
        devices.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
