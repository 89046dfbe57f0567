"""One nightly run: read every sensor's window into the outbox, and deliver the outbox meanwhile.

Readers and senders form a pipeline (fetch workers -> outbox on disk -> senders),
so ten thousand sensors take the time of the slower stage, not of both, and
memory holds a few payloads at a time, not one per sensor:

  readers  `fetch_workers` threads, each reading `fetch_batch` sensors per range
           request, build each payload and write it to the outbox;
  senders  `send_workers` threads (send.py) take each entry as soon as it is on disk,
           and the backlog of earlier runs, send it, and push its breakdown.

Writing before sending is the outbox's guarantee: once a payload is on disk, every
later run (and the scheduler's retry loop) delivers it, whatever happened to the run
that wrote it.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from homewatt.config import Settings
from homewatt.window import TZ, Window
from partner_job.client import Outcome, PartnerClient
from partner_job.outbox import Outbox, Pending, filename
from partner_job.push import push_breakdown, push_outbox
from partner_job.read import make_bar, payload, prepare
from partner_job.send import Senders
from partner_job.stats import Stats

__all__ = ["Stats", "deliver", "land", "last_run_path", "payload", "prepare", "report_outbox", "run"]

log = logging.getLogger(__name__)


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


def land(settings: Settings, outbox: Outbox, entry: Pending, out: Outcome) -> tuple[str, str]:
    """Push and remove what was answered, set aside what was refused, keep the rest.

    Returns the Stats counter the entry adds to and its problem line, if any.
    """
    if out.status == "delivered":
        if out.answer is None:
            raise RuntimeError(f"{entry.key}: delivered without an answer")  # a client bug
        try:
            push_breakdown(
                settings.pushgateway_url,
                entry.sensor,
                out.answer["shares"],
                entry.joules,
                (entry.window_start, entry.window_end),
                time.time(),
            )
        except Exception as exc:  # the breakdown did not reach the user: keep the entry
            error = f"push failed: {exc}"
            outbox.keep(entry, entry.attempts + out.attempts, error)
            return "failed", f"{entry.key}: {error}"
        outbox.done(entry)
        return "delivered", ""
    if out.status == "rejected":
        path = outbox.reject(entry, out.http_status or 0, out.detail)
        log.error("%s rejected by the partner (%s): %s", entry.key, out.http_status, out.detail)
        return "rejected", f"{entry.key}: rejected {out.http_status}: {out.detail} (kept in {path})"
    outbox.keep(entry, entry.attempts + out.attempts, str(out.detail))
    log.warning("%s not delivered after %d attempts: %s", entry.key, out.attempts, out.detail)
    return "failed", f"{entry.key}: {out.detail} (kept, will retry)"


def _senders(
    settings: Settings, client: PartnerClient, outbox: Outbox, workers: int | None, stats: Stats, bar: tqdm
) -> Senders:
    lands = functools.partial(land, settings, outbox)
    return Senders(client, outbox, lands, workers or settings.partner_send_workers, stats, bar)


def deliver(
    settings: Settings,
    client: PartnerClient,
    outbox: Outbox,
    progress: bool = False,
    workers: int | None = None,
) -> Stats:
    """Send every pending entry; push each breakdown; remove what landed; report the outbox."""
    start = time.monotonic()
    stats = Stats()
    paths = outbox.paths()
    with (
        make_bar(len(paths), "send", progress) as bar,
        _senders(settings, client, outbox, workers, stats, bar) as s,
    ):
        for path in paths:
            s.submit(path)
    problem = report_outbox(settings, outbox)
    if problem:
        stats.problems.append(problem)
    stats.seconds = time.monotonic() - start
    return stats


def run(
    settings: Settings,
    sensors: Sequence[str],
    at: dt.datetime,
    client: PartnerClient,
    progress: bool = True,
    tz: str = TZ,
    *,
    fetch_workers: int | None = None,
    fetch_batch: int | None = None,
    send_workers: int | None = None,
) -> Stats:
    """The window of 30 local days (in `tz`, the fleet's timezone) ending at the midnight `at`.

    The backlog (entries of earlier windows still pending) goes out alongside; an
    entry of this very window left by an earlier run is replaced by the fresh read.
    """
    start = time.monotonic()
    window = Window.ending(at, tz)
    outbox = Outbox(settings.data / "outbox")
    sensors = list(dict.fromkeys(sensors))  # a sensor named twice is read once
    ours = {filename(f"{s}:{window.end_date}") for s in sensors}
    backlog = [p for p in outbox.paths() if p.name not in ours]
    stats = Stats()
    bar = make_bar(len(sensors) + len(backlog), f"partner {window.end_date}", progress)
    with bar, _senders(settings, client, outbox, send_workers, stats, bar) as senders:

        def feed() -> None:  # the backlog goes out alongside this run's payloads
            for p in backlog:
                senders.submit(p)

        feeder = threading.Thread(target=feed, name="backlog")
        feeder.start()
        try:
            prepare(
                settings,
                sensors,
                window,
                outbox,
                workers=fetch_workers,
                batch=fetch_batch,
                written=senders.submit,
                stats=stats,
                bar=bar,
            )
            stats.fetch_seconds = time.monotonic() - start
            path = last_run_path(settings)  # every payload of the run is on disk
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"finished": time.time(), "window_end": window.end_ts}))
        except BaseException:  # Ctrl-C, a bug: what is queued stays pending
            senders.stop()
            raise
        finally:
            feeder.join()
    problem = report_outbox(settings, outbox)  # the outbox state, this run included
    if problem:
        stats.problems.append(problem)
    stats.seconds = time.monotonic() - start
    return stats
