"""The readers: each sensor's window from the history into the outbox, several at a time.

`workers` threads each read `batch` sensors per range request (fetch.py) and
write each sensor's payload to the outbox as soon as it is built, then hand the
entry's path on (`written`: the senders' queue, in a run).  A reader holds its
batch's readings only while it builds their payloads: memory is workers x batch
sensors, whatever the fleet's size.  A batched request that fails is retried one
sensor at a time, so that only the sensor at fault is reported and skipped.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from homewatt.config import Settings
from homewatt.window import Window
from partner_job import fetch
from partner_job.outbox import Entry, Outbox, filename
from partner_job.stats import Stats

log = logging.getLogger(__name__)


def payload(sensor: str, window: Window, values: list[float | None]) -> dict:
    return {
        "sensor_id": sensor,
        "start": window.start_utc(),
        "resolution_seconds": 60,
        "unit": "Wh",
        "values": values,
    }


def make_bar(total: int, desc: str, progress: bool) -> tqdm:
    """The one progress bar of a command: sensors done, rate, ETA."""
    return tqdm(total=total, desc=desc, unit="sensor", disable=not progress, smoothing=0.1)


def prepare(
    settings: Settings,
    sensors: Sequence[str],
    window: Window,
    outbox: Outbox,
    progress: bool = False,
    *,
    workers: int | None = None,
    batch: int | None = None,
    written: Callable[[Path], None] | None = None,
    stats: Stats | None = None,
    bar: tqdm | None = None,
) -> Stats:
    """Read each sensor's window from the history (Thanos Query) and write its payload to the outbox.

    `written(path)` is called with each entry as soon as it is on disk, and with the
    pending entry of a sensor that could not be read but has one from an earlier run
    of the same window (it still goes out).
    """
    stats = stats or Stats()
    sensors = list(dict.fromkeys(sensors))  # a sensor named twice is read once
    workers = workers or settings.partner_fetch_workers
    batch = batch or settings.partner_fetch_batch
    own_bar = bar is None
    bar = bar or make_bar(len(sensors), f"fetch {window.end_date}", progress)
    url = settings.history_url

    def write(sensor: str, readings: np.ndarray) -> None:
        key = f"{sensor}:{window.end_date}"
        entry = Entry(
            key=key,
            sensor=sensor,
            window_start=window.start_ts,
            window_end=window.end_ts,
            payload=payload(sensor, window, fetch.minute_wh(readings)),
            created=outbox.created(key) or time.time(),  # a rerun keeps the backlog's clock
        )
        path = outbox.put(entry)
        with stats.lock:
            stats.sensors += 1
            bar.set_postfix(stats.postfix(), refresh=False)
            if written is None:
                bar.update(1)
        if written is not None:
            written(path)  # the sender moves the bar once it is sent

    def failed(sensor: str, exc: Exception) -> None:  # one sensor's trouble never stops the others
        log.error("%s: cannot read the history at %s: %s", sensor, url, exc)
        with stats.lock:
            stats.problems.append(f"{sensor}: cannot read the history at {url}: {exc}")
        older = outbox.pending_dir / filename(f"{sensor}:{window.end_date}")
        if written is not None and older.exists():
            written(older)
            return
        with stats.lock:
            bar.update(1)

    def read(group: list[str]) -> None:
        start = time.monotonic()
        try:
            readings = fetch.counter_readings_many(url, group, window)
        except Exception as exc:
            if len(group) == 1:
                failed(group[0], exc)
            else:  # one by one: only the sensor at fault fails
                for sensor in group:
                    read([sensor])
            return
        for sensor in group:
            write(sensor, readings.pop(sensor))
        with stats.lock:
            stats.fetch_busy += time.monotonic() - start

    groups = [list(sensors[i : i + batch]) for i in range(0, len(sensors), batch)]
    with cf.ThreadPoolExecutor(workers, thread_name_prefix="reader") as pool:
        futures = [pool.submit(read, g) for g in groups]
        try:
            for fut in cf.as_completed(futures):
                fut.result()
        except BaseException:  # Ctrl-C, a bug: read no further (what is on disk stays)
            pool.shutdown(cancel_futures=True)
            raise
    if own_bar:
        bar.close()
    return stats
