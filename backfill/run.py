"""Run a backfill plan: generate, ingest with promtool, move blocks, report.

Both cores are used: the main thread generates the next raw chunk while promtool
processes (one per worker thread) ingest the previous ones, and the 3-year
history's model sums run in worker processes at the same time.  At most
`workers + 1` chunk files exist at once, so disk use stays bounded.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import multiprocessing
import shlex
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from backfill import generate
from backfill.ingest import Ingester, Journal, Target
from backfill.plan import HISTORY_BLOCK, RAW_BLOCK, Chunk, Plan
from backfill.report import Progress
from homewatt import loadmodel, promapi
from homewatt.contract import DAY, MINUTE, POWER, QUARTER_HOUR, READING15M
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
                *upload,
            ]
        )


def expected_samples(n_sensors: int, chunk: Chunk, plan: Plan) -> int:
    """Sample count of a chunk, for the progress bar (exact for raw, close for history)."""
    if chunk.kind == "raw":
        n = chunk.end - chunk.start
        return n_sensors * (2 * n + 2 * (n // MINUTE) + 3 * (n // QUARTER_HOUR))  # + the quarter-hour counter
    return n_sensors * 3 * ((chunk.end - chunk.start) // QUARTER_HOUR)


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


def _history_counters(
    sensors: tuple[Sensor, ...], plan: Plan, raw_start_counter: np.ndarray, energy: np.ndarray, first_q: int
) -> tuple[np.ndarray, np.ndarray]:
    """Counter at every history quarter instant, walking back from the raw window's start.

    `energy[:, j]` is the energy of [first_q + 900 j, first_q + 900 (j + 1)).  Returns
    (instants, counters) for instants first_q + 900 .. history_end - 900.
    """
    history_end = first_q + QUARTER_HOUR * energy.shape[1]
    tail = loadmodel.power(sensors, np.arange(plan.raw_start, history_end)).sum(axis=1)
    at_end = raw_start_counter + tail  # counter at history_end
    after = np.cumsum(energy[:, ::-1], axis=1)[:, ::-1]  # energy from quarter j to history_end
    instants = first_q + QUARTER_HOUR * np.arange(1, energy.shape[1], dtype=np.int64)
    counters = at_end[:, None] - after[:, 1:]
    return instants, counters


class _Writer:
    """Hands generated chunks to promtool workers: at most `workers + 1` chunk texts
    exist at once (so memory and disk stay bounded), and counts what they wrote."""

    def __init__(
        self,
        ingester: Ingester,
        pool: cf.ThreadPoolExecutor,
        workers: int,
        bar: tqdm,
        on_chunk: Callable[[], None] = lambda: None,
    ) -> None:
        self.ingester, self.pool, self.bar, self.on_chunk = ingester, pool, bar, on_chunk
        self.slots = threading.BoundedSemaphore(workers + 1)
        self.lock = threading.Lock()
        self.jobs: list[cf.Future[None]] = []
        self.written = 0
        self.samples = 0

    def submit(self, chunk: Chunk, texts: dict[str, bytes], n: int, block: int) -> None:
        self.slots.acquire()
        self.jobs.append(self.pool.submit(self._ingest, chunk, texts, n, block))
        _raise_failed(self.jobs)

    def _ingest(self, chunk: Chunk, texts: dict[str, bytes], n: int, block: int) -> None:
        try:
            self.ingester.ingest(chunk, texts, n, block)
        finally:
            self.slots.release()
        with self.lock:
            self.written += 1
            self.samples += n
            self.bar.update(n)
        self.on_chunk()

    def finish(self) -> None:
        for job in self.jobs:
            job.result()


def _history_sums(
    procs: cf.ProcessPoolExecutor, sensors: tuple[Sensor, ...], plan: Plan
) -> list[cf.Future[np.ndarray]]:
    """Phase 1: the history's quarter-hour energies, summed from the model in worker processes
    (30 days a task) while the main thread writes the raw chunks."""
    first_q = plan.history_start - QUARTER_HOUR
    end = plan.of("history")[-1].end
    edges = [*range(first_q, end, 30 * DAY), end]
    spans = zip(edges[:-1], edges[1:], strict=True)
    return [procs.submit(generate.quarter_energy, sensors, a, b) for a, b in spans]


def _write_raw(
    writer: _Writer,
    sensors: tuple[Sensor, ...],
    plan: Plan,
    todo: list[Chunk],
    ledger: Ledger,
    start: np.ndarray,
) -> None:
    """Phase 2: raw chunks in time order, carrying the counter from one chunk to the next
    (`start` is the counter at the raw window's start)."""
    carry_at, carry = plan.raw_start, start
    for chunk in todo:
        if carry_at != chunk.start:  # an earlier run wrote the chunk before: read the counter afresh
            carry = counter(ledger, [chunk.start])[:, 0]
        texts, n, carry = generate.raw_chunk(
            sensors, chunk.start, chunk.end, carry, plan.raw_start + MINUTE, plan.raw_start
        )
        carry_at = chunk.end
        writer.submit(chunk, texts, n, RAW_BLOCK)


def _write_history(
    writer: _Writer,
    sensors: tuple[Sensor, ...],
    plan: Plan,
    todo: list[Chunk],
    sums: list[cf.Future[np.ndarray]],
    raw_start_counter: np.ndarray,
) -> None:
    """Phase 3: the counters need every quarter's energy; then one file per block."""
    first_q = plan.history_start - QUARTER_HOUR
    energy = np.concatenate([f.result() for f in sums], axis=1)
    instants, counters = _history_counters(sensors, plan, raw_start_counter, energy, first_q)
    for chunk in todo:
        sel = (instants >= chunk.start) & (instants < chunk.end)
        # energy[:, j] ends at instant first_q + 900 (j + 1) = instants[j]
        texts, n = generate.history_chunk(sensors, instants[sel], counters[:, sel], energy[:, :-1][:, sel])
        writer.submit(chunk, texts, n, HISTORY_BLOCK)


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
        writer = _Writer(ingester, pool, workers, bar, report)
        sums = _history_sums(procs, sensors, plan) if history_todo else []
        _write_raw(writer, sensors, plan, raw_todo, ledger, raw_start_counter)
        if history_todo:
            _write_history(writer, sensors, plan, history_todo, sums, raw_start_counter)
        writer.finish()
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
    )


def _raise_failed(jobs: list[cf.Future[None]]) -> None:
    for job in jobs:
        if job.done() and job.exception() is not None:
            raise job.exception()  # type: ignore[misc]


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
