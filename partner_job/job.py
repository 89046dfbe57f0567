"""One nightly run: fetch every sensor's window into the outbox, then deliver the outbox.

Preparing and delivering are separate on purpose: once a payload is in the
outbox, every later run (and the scheduler's retry loop) delivers it, whatever
happened to the run that wrote it.
"""

from __future__ import annotations

import concurrent.futures as cf
import datetime as dt
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from homewatt.config import Settings
from homewatt.window import TZ, Window
from partner_job import fetch
from partner_job.client import Outcome, PartnerClient
from partner_job.outbox import Entry, Outbox
from partner_job.push import push_breakdown, push_outbox, window_joules

log = logging.getLogger(__name__)


@dataclass
class Stats:
    sensors: int = 0
    delivered: int = 0
    failed: int = 0
    rejected: int = 0
    retried: int = 0  # sends that needed more than one attempt
    bytes: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    def line(self, what: str) -> str:
        return (
            f"{what}: {self.sensors} sensors prepared, {self.delivered} sent, "
            f"{self.failed} failed (kept, will retry), {self.rejected} rejected, {self.retried} retried, "
            f"{self.bytes / 1e6:.2f} MB, {self.seconds:.1f} s"
        )


def payload(sensor: str, window: Window, values: list[float | None]) -> dict:
    return {
        "sensor_id": sensor,
        "start": window.start_utc(),
        "resolution_seconds": 60,
        "unit": "Wh",
        "values": values,
    }


def prepare(settings: Settings, sensors: list[str], window: Window, outbox: Outbox, progress: bool) -> Stats:
    """Read each sensor's window from the history (Thanos Query) and write its payload to the outbox."""
    stats = Stats()
    for sensor in tqdm(sensors, desc=f"fetch {window.end_date}", unit="sensor", disable=not progress):
        try:
            readings = fetch.counter_readings(settings.history_url, sensor, window)
        except Exception as exc:  # one sensor's trouble never stops the others
            stats.problems.append(f"{sensor}: cannot read the history at {settings.history_url}: {exc}")
            log.error("%s: cannot read the history at %s: %s", sensor, settings.history_url, exc)
            continue
        key = f"{sensor}:{window.end_date}"
        entry = Entry(
            key=key,
            sensor=sensor,
            window_start=window.start_ts,
            window_end=window.end_ts,
            payload=payload(sensor, window, fetch.minute_wh(readings)),
            created=outbox.created(key) or time.time(),  # a rerun keeps the backlog's clock
        )
        outbox.put(entry)
        stats.sensors += 1
    return stats


def last_run_path(settings: Settings) -> Path:
    return settings.data / "partner_job" / "last_run.json"


def report_outbox(settings: Settings, outbox: Outbox) -> str | None:
    """Push the outbox's state for the alerts and the Fleet health dashboard; the problem, if any.

    A Pushgateway that is down costs only this report (the next run or retry pushes
    again); it never fails a delivery.
    """
    try:
        push_outbox(settings.pushgateway_url, outbox, last_run_path(settings))
    except Exception as exc:
        log.warning("cannot push the outbox state to %s: %s", settings.pushgateway_url, exc)
        return f"outbox state not pushed to {settings.pushgateway_url}: {exc}"
    return None


def deliver(
    settings: Settings, client: PartnerClient, outbox: Outbox, progress: bool = False, workers: int = 4
) -> Stats:
    """Send every pending entry; push each breakdown; remove what landed; report the outbox."""
    stats = Stats()
    entries = outbox.pending()

    def one(entry: Entry) -> tuple[Entry, Outcome]:
        return entry, client.send(entry)

    with cf.ThreadPoolExecutor(workers) as pool:
        bar = tqdm(total=len(entries), desc="send", unit="sensor", disable=not progress)
        for fut in cf.as_completed([pool.submit(one, e) for e in entries]):
            entry, out = fut.result()
            bar.update(1)
            stats.bytes += len(entry.body())
            stats.retried += out.attempts > 1
            if out.status == "delivered":
                if out.answer is None:
                    raise RuntimeError(f"{entry.key}: delivered without an answer")  # a client bug
                try:
                    push_breakdown(
                        settings.pushgateway_url,
                        entry.sensor,
                        out.answer["shares"],
                        window_joules(entry.payload),
                        (entry.window_start, entry.window_end),
                        time.time(),
                    )
                except Exception as exc:  # the breakdown did not reach the user: keep the entry
                    entry.attempts += out.attempts
                    entry.last_error = f"push failed: {exc}"
                    outbox.put(entry)
                    stats.failed += 1
                    stats.problems.append(f"{entry.key}: {entry.last_error}")
                    continue
                outbox.done(entry)
                stats.delivered += 1
            elif out.status == "rejected":
                path = outbox.reject(entry, out.http_status or 0, out.detail)
                stats.rejected += 1
                stats.problems.append(
                    f"{entry.key}: rejected {out.http_status}: {out.detail} (kept in {path})"
                )
                log.error("%s rejected by the partner (%s): %s", entry.key, out.http_status, out.detail)
            else:
                entry.attempts += out.attempts
                entry.last_error = str(out.detail)
                outbox.put(entry)
                stats.failed += 1
                stats.problems.append(f"{entry.key}: {out.detail} (kept, will retry)")
                log.warning("%s not delivered after %d attempts: %s", entry.key, out.attempts, out.detail)
        bar.close()
    problem = report_outbox(settings, outbox)
    if problem:
        stats.problems.append(problem)
    return stats


def run(
    settings: Settings,
    sensors: list[str],
    at: dt.datetime,
    client: PartnerClient,
    progress: bool = True,
    tz: str = TZ,
) -> Stats:
    """The window of 30 local days (in `tz`, the fleet's timezone) ending at the midnight `at`."""
    start = time.monotonic()
    window = Window.ending(at, tz)
    outbox = Outbox(settings.data / "outbox")
    prepared = prepare(settings, sensors, window, outbox, progress)
    path = last_run_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"finished": time.time(), "window_end": window.end_ts}))
    sent = deliver(settings, client, outbox, progress)  # pushes the outbox state, this run included
    sent.sensors = prepared.sensors
    sent.problems = prepared.problems + sent.problems
    sent.seconds = time.monotonic() - start
    return sent
