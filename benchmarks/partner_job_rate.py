"""Seconds per sensor for the nightly job's fetch (range API) and send (reference partner + push).

Backfills the default fleet's last 31 days at 1 s into a scratch data dir,
starts Prometheus, the Pushgateway and the reference partner on free ports,
then times one run of the window ending 2026-11-30 00:00 Europe/Paris.
Goal: fetch + send <= 1 s per sensor (10,000 sensors in a night).
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backfill.__main__ import options_from_argv  # noqa: E402
from backfill.api import backfill  # noqa: E402
from homewatt.config import Settings  # noqa: E402
from homewatt.fleet import load_fleet  # noqa: E402
from homewatt.procs import free_port  # noqa: E402
from homewatt.window import Window, midnight  # noqa: E402
from partner_job import fetch, job  # noqa: E402
from partner_job.client import PartnerClient  # noqa: E402
from partner_job.outbox import Outbox  # noqa: E402
from stack.services import Stack  # noqa: E402
from stack.supervisor import Supervisor  # noqa: E402


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="homewatt-partner-bench-"))
    os.environ.update(
        {
            "PROMETHEUS_URL": f"http://127.0.0.1:{free_port()}",
            "PUSHGATEWAY_URL": f"http://127.0.0.1:{free_port()}",
            "PARTNER_URL": f"http://127.0.0.1:{free_port()}",
            "EXPORTER_LISTEN": f"127.0.0.1:{free_port()}",
            "HOMEWATT_DATA": str(root),
            "PARTNER_TOKEN": "bench",
        }
    )
    try:
        fleet = load_fleet()
        at = midnight(dt.date(2026, 11, 30))
        start = time.monotonic()
        backfill(
            options_from_argv(
                [
                    "--end",
                    "2026-11-30T00:00:00+01:00",
                    "--raw-days",
                    "31",
                    "--history-days",
                    "0",
                    "--no-progress",
                ]
            )
        )
        print(f"setup: backfilled {len(fleet)} sensors x 31 days in {time.monotonic() - start:.0f} s")
        settings = Settings.from_env()
        stack = Stack(settings)
        with Supervisor(root / "logs") as sup:
            for service in (stack.pushgateway(), stack.prometheus(standalone=True), stack.partner()):
                sup.run(service)
            window = Window.ending(at)
            outbox = Outbox(root / "outbox")
            t0 = time.monotonic()
            prepared = job.prepare(settings, fleet.ids(), window, outbox, progress=False)
            t1 = time.monotonic()
            sent = job.deliver(settings, PartnerClient(settings.partner_url, "bench"), outbox, workers=1)
            t2 = time.monotonic()
        n = prepared.sensors
        print(
            f"window {window.start.isoformat()} .. {window.end.isoformat()}: {window.minutes} minutes, "
            f"{sent.bytes / n / 1e3:.0f} kB JSON per sensor"
        )
        print(
            f"fetch (range API, {fetch.requests_needed(window)} requests/sensor): {(t1 - t0) / n:.3f} s per sensor"
        )
        print(f"send + validate + push (1 worker):        {(t2 - t1) / n:.3f} s per sensor")
        print(
            f"fetch + send:                             {(t2 - t0) / n:.3f} s per sensor (goal <= 1 s); "
            f"{sent.delivered} delivered, {sent.failed} failed"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
