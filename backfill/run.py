"""Run a backfill plan: generate, ingest with promtool, move blocks, report.

Both cores are used: the main thread generates the next raw chunk while promtool
processes (one per worker thread) ingest the previous ones, and the 3-year
history's model sums run in worker processes at the same time (backfill/history.py).
At most `workers + 1` chunk files exist at once (backfill/writer.py), and a chunk
holds a bounded number of sensors (backfill/plan.py), so memory and disk stay
bounded whatever the fleet's size.
"""

from __future__ import annotations

import concurrent.futures as cf
import functools
import logging
import multiprocessing
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
from tqdm import tqdm

from backfill import generate
from backfill.history import HistoryLane
from backfill.ingest import Ingester, Journal, Target
from backfill.plan import RAW_BLOCK, Chunk, Plan, samples_per_sensor
from backfill.report import Progress
from backfill.writer import Writer
from homewatt import promapi
from homewatt.contract import MINUTE, POWER, QUARTER_HOUR, READING15M, STREAMS
from homewatt.fleet import Sensor
from homewatt.meter import Ledger, counter, fingerprint
from homewatt.procs import WaitTimeout, die_with_parent, wait_until

log = logging.getLogger(__name__)


class BackfillError(RuntimeError):
    pass


@dataclass
class Summary:
    sensors: int
    plan: Plan
    written: int  # chunks written by this run
    skipped: int  # chunks already done by an earlier run
    samples: int  # samples written by this run
    total_samples: int  # samples in every done chunk
    blocks: int
    bytes: int
    seconds: float
    target: Target
    upload: list[list[str]] = field(default_factory=list)  # thanos commands that put the blocks in a bucket
    promtool_rss: int = 0  # this run's largest promtool, peak resident bytes

    def text(self) -> str:
        def day(t: int) -> str:
            return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))

        p = self.plan
        where = str(self.target.root)
        if self.target.per_stream:
            where = ", ".join(str(d) for d in self.target.dirs())
        upload = []
        if self.upload:
            upload = [
                "  into the bucket (each command uploads one stream; re-running one skips what is there):"
            ]
            upload += ["    " + shlex.join(cmd) for cmd in self.upload]
        bps = self.bytes / self.total_samples if self.total_samples else 0.0
        rate = self.samples / self.seconds if self.seconds else 0.0
        return "\n".join(
            [
                f"backfill: {self.sensors} sensors, {self.written} chunks written, "
                f"{self.skipped} already there (skipped)",
                f"  raw 1 s + 1m/15m:     {day(p.raw_start)} -> {day(p.live_start)} (live from there)",
                f"  quarter-hour history: {day(p.history_start)} -> {day(p.raw_start)}",
                f"  samples: {self.samples:,} this run ({rate:,.0f}/s), {self.total_samples:,} in all",
                f"  blocks: {self.blocks}, {self.bytes / 1e6:,.1f} MB on disk, {bps:.2f} bytes/sample",
                f"  took {self.seconds:.1f} s; blocks in {where}",
                *([f"  promtool's peak memory: {self.promtool_rss / 1e6:,.0f} MB"] * bool(self.promtool_rss)),
                *upload,
            ]
        )


def expected_samples(n_sensors: int, chunk: Chunk, plan: Plan) -> int:
    """Sample count of a chunk, for the progress bar (close: plan.samples_per_sensor);
    `n_sensors` is the fleet's size, of which the chunk holds a group or all."""
    return len(chunk.sensors(n_sensors)) * samples_per_sensor(chunk.kind, chunk.end - chunk.start)


def _check_journal(
    journal: Journal, sensors: Sequence[Sensor], plan: Plan, raw_days: float, hist_days: float
) -> None:
    identity = {
        "sensors": {s.id: fingerprint(s) for s in sensors},
        "live_start": plan.live_start,
        "raw_days": raw_days,
        "history_days": hist_days,
    }
    if "identity" not in journal.state:
        journal.state["identity"] = identity
        journal.save()
        return
    if journal.state["identity"] != identity:
        raise BackfillError(
            f"{journal.path} describes another backfill (other sensors, span or live start). "
            "Backfilling again over it would overlap data: remove the data directory to start over."
        )


def _ledger_of(ledger: Ledger, group: tuple[Sensor, ...]) -> Ledger:
    """The ledger of a group of its sensors (same cache), to read their counters alone."""
    return ledger if group == ledger.sensors else Ledger(group, ledger.cache_dir)


def _raw_text(
    out: dict[str, BinaryIO],
    group: tuple[Sensor, ...],
    chunk: Chunk,
    start: np.ndarray,
    plan: Plan,
    ends: list[np.ndarray],
) -> dict[str, int]:
    counts, end = generate.write_raw_chunk(
        out, group, chunk.start, chunk.end, start, plan.raw_start + MINUTE, plan.raw_start
    )
    ends.append(end)
    return counts


def _write_raw(
    writer: Writer,
    sensors: tuple[Sensor, ...],
    plan: Plan,
    todo: list[Chunk],
    ledger: Ledger,
    start: np.ndarray,
    between: Callable[[], None],
) -> None:
    """Raw chunks in time order, each group of sensors carrying its counter from one chunk to
    the next (`start` is the counter at the raw window's start); `between` runs after each."""
    carry: dict[tuple[int, int | None], tuple[int, np.ndarray]] = {}
    for chunk in todo:
        r = chunk.sensors(len(sensors))
        group = sensors[r.start : r.stop]
        at, values = carry.get((chunk.first, chunk.stop), (plan.raw_start, start[r.start : r.stop]))
        if at != chunk.start:  # an earlier run wrote the chunk before: read the counter afresh
            values = counter(_ledger_of(ledger, group), [chunk.start])[:, 0]
        ends: list[np.ndarray] = []  # the counters at the chunk's end
        write = functools.partial(_raw_text, group=group, chunk=chunk, start=values, plan=plan, ends=ends)
        writer.write(chunk, STREAMS, RAW_BLOCK, write)
        carry[(chunk.first, chunk.stop)] = (chunk.end, ends[0])
        between()


def run(
    sensors: Sequence[Sensor],
    plan: Plan,
    target: Path | Target,
    work: Path,
    ledger: Ledger,
    raw_days: float,
    history_days: float,
    workers: int = 2,
    progress: bool = True,
    labels: dict[str, dict[str, str]] | None = None,
    pushgateway_url: str | None = None,
) -> Summary:
    """Write the plan's missing chunks into `target`; `labels` are each stream's
    external labels, written into every block's meta.json for Thanos; the progress
    goes to `pushgateway_url` (backfill/report.py) when given."""
    start_time = time.monotonic()
    sensors = tuple(sensors)
    journal = Journal.load(work / "state.json")
    _check_journal(journal, sensors, plan, raw_days, history_days)
    target = target if isinstance(target, Target) else Target(target)
    ingester = Ingester(target, work, journal, labels)
    recovered = ingester.recover()
    if recovered:
        log.info("finished moving %d chunk(s) an interrupted run had written", len(recovered))
    todo = [c for c in plan.chunks if c.id not in journal.done]
    planned = {c.id for c in plan.chunks}
    progress_report = Progress(pushgateway_url, len(planned))

    def report(force: bool = False) -> None:
        progress_report(len(planned.intersection(list(journal.done))), force)

    report(force=True)
    bar = tqdm(
        total=sum(expected_samples(len(sensors), c, plan) for c in todo),
        unit="sample",
        unit_scale=True,
        desc="backfill",
        disable=not progress or not todo,
        smoothing=0.1,
    )
    raw_start_counter = counter(ledger, [plan.raw_start])[:, 0] if plan.chunks else np.zeros(0)
    ledger.save()
    raw_todo = [c for c in todo if c.kind == "raw"]
    history_todo = [c for c in todo if c.kind == "history"]
    with (
        cf.ThreadPoolExecutor(workers, thread_name_prefix="promtool") as pool,
        cf.ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("spawn"), initializer=die_with_parent
        ) as procs,
    ):
        writer = Writer(ingester, pool, workers, bar, report)
        try:
            history = HistoryLane(writer, procs, sensors, plan, history_todo, raw_start_counter)
            _write_raw(writer, sensors, plan, raw_todo, ledger, raw_start_counter, history.poll)
            history.drain()
            writer.finish()
        except BaseException:  # the sums queued for later windows would be waited for in vain
            procs.shutdown(wait=False, cancel_futures=True)
            raise
    bar.close()
    report(force=True)
    done = journal.done.values()
    return Summary(
        sensors=len(sensors),
        plan=plan,
        written=writer.written,
        skipped=len(plan.chunks) - len(todo),
        samples=writer.samples,
        total_samples=sum(d["samples"] for d in done),
        blocks=sum(len(d["blocks"]) for d in done),
        bytes=sum(d["bytes"] for d in done),
        seconds=time.monotonic() - start_time,
        target=target,
        promtool_rss=writer.promtool_rss,
    )


def wait_for_history(url: str, plan: Plan, sensors: int, timeout: float = 150.0) -> None:
    """Wait until the backfilled history answers queries at `url`.

    Prometheus loads new blocks on its own once a minute; Thanos Query sees
    uploaded blocks once the store gateway has synced the bucket.  Both the raw
    window's start and the history's are read back for every sensor.
    """
    # Instants with a quarter-hour reading less than 15 minutes before them, in each span.
    checks = [plan.raw_start + QUARTER_HOUR + 30] if plan.of("raw") else []
    checks += [plan.history_start + 2 * QUARTER_HOUR] if plan.of("history") else []
    reading = f"last_over_time({READING15M.name}[15m])"
    # ... and the raw window's last second, where live data takes over.
    join = [(f"last_over_time({POWER.name}[1m])", plan.live_start - 1)] if plan.of("raw") else []
    log.info("waiting until %s answers for the backfilled history ...", url)

    def loaded() -> bool:
        exprs = [(reading, t) for t in checks] + join
        return all(len(promapi.query(url, e, at=t, extra=promapi.HISTORY)) >= sensors for e, t in exprs)

    try:
        wait_until(loaded, timeout, f"{url} showing the backfilled history", 2.0, (promapi.PromError,))
    except WaitTimeout as exc:
        raise BackfillError(str(exc)) from None
