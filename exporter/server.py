"""HTTP endpoint serving the fleet's exposition plus the exporter's own metrics.

The body is gzipped when the client accepts it, as Prometheus always does: at
10,000 sensors it is ≈ 1.8 MB a second plain and ≈ 0.2 MB gzipped, which matters
once Prometheus scrapes from another machine (docs/scaling.md).  Most of it was
compressed before the scrape (exporter/gzipped.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from prometheus_client import REGISTRY, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST, gzip_accepted

from devices.hub import Devices
from exporter import gzipped
from exporter.ahead import Ahead
from exporter.render import FleetRenderer, Piece
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
        self.ahead = Ahead(live, self.renderer)
        self.skipped = 0  # modelled values the last scrape left out (NaN, negative, no data)
        SENSORS.set(len(live.sensors) + len(device_ids))

    def body(self, now: float) -> str:
        """The fleet's families at `now`."""
        return gzipped.plain(self.pieces(now)).decode()

    def pieces(self, now: float) -> list[Piece]:
        """The fleet's families at `now`, as the renderer's pieces."""
        second = self.ahead.get(int(now))
        pieces = self.renderer.pieces(second.modelled, self.devices.snapshot(now) if self.devices else None)
        self.skipped = second.modelled.skipped
        if self.skipped:
            SKIPPED.inc(self.skipped)
        return pieces

    def metrics(self, now: float | None = None, gzip: bool = False) -> bytes:
        """The whole /metrics at `now` (default: the clock's), gzipped if asked."""
        start = time.perf_counter()
        pieces = [*self.pieces(self.clock() if now is None else now), generate_latest(REGISTRY)]
        body = gzipped.member(pieces) if gzip else gzipped.plain(pieces)
        RENDER_SECONDS.set(time.perf_counter() - start)
        return body


class MetricsHandler(Handler):
    log = log
    app: MetricsApp  # set on the subclass that serve() makes

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path.split("?")[0] == "/metrics":
            now = self.app.clock()
            gzip = gzip_accepted(self.headers.get("Accept-Encoding", ""))
            try:
                body = self.app.metrics(now, gzip)
            except Exception:
                log.exception("scrape failed")
                self.send_error(500, "scrape failed, see the exporter's log")
                return
            headers = {"Vary": "Accept-Encoding"} | ({"Content-Encoding": "gzip"} if gzip else {})
            self.reply(200, CONTENT_TYPE_LATEST, body, headers)
            # Only now, the scrape answered: computing ahead competes for the CPU and the GIL.
            self.app.ahead.prepare_next(now, gzip)
        elif self.path == "/":
            self.reply(200, "text/html", b'<a href="/metrics">homewatt exporter metrics</a>\n')
        else:
            self.send_error(404)


def serve(app: MetricsApp, host: str, port: int) -> Server:
    handler = type("BoundMetricsHandler", (MetricsHandler,), {"app": app})
    return Server((host, port), handler)
