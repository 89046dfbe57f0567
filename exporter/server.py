"""HTTP endpoint serving the fleet's exposition plus the exporter's own metrics."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np
from prometheus_client import REGISTRY, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from devices.hub import Devices
from exporter.render import FleetRenderer
from homewatt.httpserver import Handler, Server
from homewatt.live import LiveFleet

log = logging.getLogger(__name__)

RENDER_SECONDS = Gauge(
    "homewatt_exporter_render_seconds", "Time the last /metrics took to compute and format."
)
SENSORS = Gauge("homewatt_exporter_sensors", "Sensors in the served fleet.")
SKIPPED = Counter(
    "homewatt_exporter_skipped_samples",
    "Samples left out of a scrape because the value was missing, NaN or negative.",
)


class MetricsApp:
    """The modelled sensors (`live`) and the real devices (`devices`) on one /metrics."""

    def __init__(
        self, live: LiveFleet, devices: Devices | None = None, clock: Callable[[], float] = time.time
    ):
        self.live = live
        self.devices = devices
        device_ids = [s.id for s in devices.sensors] if devices else []
        self.renderer = FleetRenderer(
            [s.id for s in live.sensors],
            device_ids,
            devices.info if devices else (),
            [s.name for s in devices.sources] if devices else (),
        )
        self.clock = clock
        SENSORS.set(len(live.sensors) + len(device_ids))

    def metrics(self) -> bytes:
        start = time.perf_counter()
        now = self.clock()
        t = int(now)
        power, energy = self.live.at(t)
        ok = self.live.available(t)
        if not ok.all():  # a replayed household's missing minute: serve a gap, not a value
            power, energy = np.where(ok, power, np.nan), np.where(ok, energy, np.nan)
        body = self.renderer.render(power, energy, self.devices.snapshot(now) if self.devices else None)
        if self.renderer.skipped:
            SKIPPED.inc(self.renderer.skipped)
        RENDER_SECONDS.set(time.perf_counter() - start)
        return body.encode() + generate_latest(REGISTRY)


class MetricsHandler(Handler):
    log = log
    app: MetricsApp  # set on the subclass that serve() makes

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path.split("?")[0] == "/metrics":
            try:
                body = self.app.metrics()
            except Exception:
                log.exception("scrape failed")
                self.send_error(500, "scrape failed, see the exporter's log")
                return
            self.reply(200, CONTENT_TYPE_LATEST, body)
        elif self.path == "/":
            self.reply(200, "text/html", b'<a href="/metrics">homewatt exporter metrics</a>\n')
        else:
            self.send_error(404)


def serve(app: MetricsApp, host: str, port: int) -> Server:
    handler = type("BoundMetricsHandler", (MetricsHandler,), {"app": app})
    return Server((host, port), handler)
