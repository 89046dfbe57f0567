"""Backfill throughput on this machine, on the same data three ways.

1. promtool only: the OpenMetrics chunk files are written first (not timed), then
   promtool ingests them, one process at a time and two at once; the best of the
   two is the ceiling for the whole pipeline.
2. end to end: `backfill.run` on the same span (model -> text -> promtool ->
   blocks moved into a TSDB directory), timed from start to summary.
3. bytes per sample of the resulting blocks.

Goals: end-to-end >= 0.7 x the best promtool-only rate; with --full, the default
fleet's 90 days at 1 s (plus the 3-year history) in <= 3 minutes.

With --sensors N, instead: the real backfill (backfill.api, as `make up` runs it) of a
generated fleet of N homes (benchmarks/_fleets.py) over --days at 1 s and
--history-days of quarter-hours, into a TSDB directory; then a Prometheus on the
result checks a few sensors' totals against the model (a raw day's counter
increase, a history day's quarter-hour readings) and that every sensor is there.
Printed: samples/s, bytes per sample, wall time, and peak memory: the Python
process's, promtool's (the largest of its runs) and the largest child's (promtool
or a worker process summing the model).  Goal: peak memory set by the chunk size
(backfill/plan.py), the same for 100 sensors as for 1,000.

    python benchmarks/backfill_rate.py            # 9 days of raw data, default fleet
    python benchmarks/backfill_rate.py --full     # also the real thing: 90 days + 3 years
    python benchmarks/backfill_rate.py --sensors 1000 --days 3 --history-days 1096
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import datetime as dt
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backfill import generate  # noqa: E402
from backfill.api import Options, backfill  # noqa: E402
from backfill.ingest import promtool_blocks  # noqa: E402
from backfill.plan import RAW_BLOCK, make_plan  # noqa: E402
from backfill.run import Summary, run  # noqa: E402
from benchmarks._fleets import big_fleet, write_fleet  # noqa: E402
from homewatt import loadmodel, promapi  # noqa: E402
from homewatt.config import Settings  # noqa: E402
from homewatt.contract import DAY, ENERGY, POWER, QUARTER_HOUR, READING15M  # noqa: E402
from homewatt.fleet import Sensor, load_fleet  # noqa: E402
from homewatt.meter import Ledger, counter  # noqa: E402
from homewatt.procs import free_port  # noqa: E402
from stack.services import Stack  # noqa: E402
from stack.supervisor import Supervisor  # noqa: E402

END = 1_795_996_800  # 2026-11-30 00:00 UTC


def promtool_only(files: list[Path], samples: int, out: Path, workers: int) -> float:
    shutil.rmtree(out, ignore_errors=True)
    start = time.monotonic()
    with cf.ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda f: promtool_blocks(f, out / f.stem, RAW_BLOCK), files))
    took = time.monotonic() - start
    return samples / took


def peak_rss(who: int) -> int:
    """Peak resident bytes of this process (RUSAGE_SELF) or of its largest waited-for child."""
    return resource.getrusage(who).ru_maxrss * 1024


def mb(n: float) -> str:
    return f"{n / 1e6:,.0f} MB"


def text_bytes_per_sample() -> float:
    """OpenMetrics bytes per sample of a generated fleet's raw chunk (to size the disk)."""
    texts, n, _ = generate.raw_chunk(
        big_fleet(2, dt.date(2026, 1, 1)), 7200, 10800, np.zeros(2, np.int64), 0, 0
    )
    return sum(map(len, texts.values())) / n


def scale(n: int, days: float, history_days: float, workers: int) -> None:
    """The real backfill of a generated fleet of `n` homes, then checked through Prometheus."""
    root = Path(tempfile.mkdtemp(prefix="homewatt-backfill-scale-"))
    try:
        plan = make_plan(END, days, history_days, n)
        expected = sum(len(c.sensors(n)) * (c.end - c.start) for c in plan.chunks if c.kind == "raw") * 2
        largest = (
            max(len(c.sensors(n)) * (c.end - c.start) * 2 for c in plan.of("raw")) if plan.of("raw") else 0
        )
        need = (workers + 1) * largest * text_bytes_per_sample() + 3 * expected
        free = shutil.disk_usage(root).free
        print(
            f"fleet: {n:,} generated homes, {days:g} days at 1 s + {history_days:g} days of quarter-hours: "
            f"{len(plan.chunks)} chunks; disk needed ≈ {need / 1e9:.1f} GB (text in flight + blocks), "
            f"free {free / 1e9:.1f} GB; in {root}"
        )
        if need > free:
            raise SystemExit("not enough disk for this run")
        # The index read where the raw window starts: the ledger costs nothing there.
        fleet = big_fleet(n, dt.datetime.fromtimestamp(plan.raw_start, dt.UTC).date())
        fleet_file = write_fleet(root / "fleet.yaml", fleet)
        data = root / "data"
        started = time.monotonic()
        summary = backfill(
            Options(
                data=data,
                fleet=str(fleet_file),
                end=END,
                raw_days=days,
                history_days=history_days,
                workers=workers,
            )
        )
        took = time.monotonic() - started
        print(summary.text())
        print(
            f"{n:,} sensors: {summary.samples:,} samples in {took:.0f} s = {summary.samples / took:,.0f} samples/s, "
            f"{summary.bytes / summary.total_samples:.2f} bytes/sample"
        )
        print(
            f"peak memory: Python {mb(peak_rss(resource.RUSAGE_SELF))}, promtool {mb(summary.promtool_rss)}, "
            f"largest child (promtool or a model worker) {mb(peak_rss(resource.RUSAGE_CHILDREN))}"
        )
        check(data, fleet, summary)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def check(data: Path, fleet: tuple[Sensor, ...], summary: Summary) -> None:
    """Every sensor in Prometheus, and a few sensors' totals equal to the model's, exactly."""
    blocks = [json.loads(p.read_text()) for p in (data / "prometheus").glob("*/meta.json")]
    stored = sum(b["stats"]["numSamples"] for b in blocks)
    assert stored == summary.total_samples, (stored, summary.total_samples)
    plan = summary.plan
    settings = Settings.from_env(
        {**os.environ, "HOMEWATT_DATA": str(data), "PROMETHEUS_URL": f"http://127.0.0.1:{free_port()}"}
    )
    prom = settings.prometheus_url
    picks = [fleet[0], fleet[len(fleet) // 2], fleet[-1]]
    checks = []
    with Supervisor(data / "logs") as sup:
        sup.run(Stack(settings).prometheus(standalone=True))
        if plan.of("raw"):
            d1 = plan.live_start
            d0 = max(plan.raw_start, d1 - DAY)
            count = promapi.query(prom, f"count({POWER.name})", at=d1 - 1)
            assert int(float(count[0]["value"][1])) == len(fleet), count
            increase = promapi.by_label(
                promapi.query(prom, f"{ENERGY.name} @ {d1 - 1} - {ENERGY.name} @ {d0}")
            )
            for s in picks:
                assert increase[s.id] == loadmodel.power(s, np.arange(d0, d1 - 1)).sum(), s.id
            checks.append(f"raw: {len(fleet):,} sensors at its last second, a day's counter increase x 3")
        if plan.of("history"):
            # The newest day of readings and the oldest: the counter is carried back from the
            # raw window's start, so the oldest is where a lost or doubled quarter would show.
            newest = plan.raw_start // QUARTER_HOUR * QUARTER_HOUR - QUARTER_HOUR
            oldest_day = min(plan.history_start + DAY, newest)
            for q0, q1 in ((max(plan.history_start, newest - DAY), newest), (plan.history_start, oldest_day)):
                expr = f"{READING15M.name} @ {q1} - {READING15M.name} @ {q0}"
                increase = promapi.by_label(promapi.query(prom, expr))
                assert len(increase) == len(fleet), len(increase)
                for s in picks:
                    assert increase[s.id] == loadmodel.power(s, np.arange(q0, q1)).sum(), (s.id, q0)
            oldest = promapi.query(prom, f"count({READING15M.name})", at=plan.history_start)
            assert int(float(oldest[0]["value"][1])) == len(fleet), oldest
            checks.append(
                "history: its newest and oldest day of readings x 3, every sensor at the start and end"
            )
    print(f"checked through Prometheus, {stored:,} samples in {len(blocks)} blocks: " + "; ".join(checks))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--days", type=float, default=9.0, help="raw days (default 9)")
    ap.add_argument("--full", action="store_true", help="also time the default 90 days + 3 years")
    ap.add_argument("--sensors", type=int, help="the real backfill of a generated fleet of this many homes")
    ap.add_argument(
        "--history-days",
        type=float,
        default=3 * 365 + 1,
        help="with --sensors: days of quarter-hours (default 1096)",
    )
    ap.add_argument(
        "--workers", type=int, default=2, help="with --sensors: promtool processes at once (default 2)"
    )
    args = ap.parse_args()
    if args.sensors:
        scale(args.sensors, args.days, args.history_days, args.workers)
        return
    fleet = load_fleet()
    sensors = fleet.sensors
    root = Path(tempfile.mkdtemp(prefix="homewatt-bench-"))
    try:
        plan = make_plan(END, args.days, 0)
        ledger = Ledger(sensors, root / "ledger")
        files: list[Path] = []
        total = 0
        carry = counter(ledger, [plan.raw_start])[:, 0]
        for i, chunk in enumerate(plan.of("raw")):
            texts, n, carry = generate.raw_chunk(
                sensors, chunk.start, chunk.end, carry, plan.raw_start + 60, plan.raw_start
            )
            for stream, text in texts.items():
                path = root / f"chunk{i:03d}-{stream}.om"
                path.write_bytes(text)
                files.append(path)
            total += n
        print(
            f"data: {len(sensors)} sensors x {args.days:g} days at 1 s + 1m/15m = {total:,} samples "
            f"in {len(files)} files ({sum(p.stat().st_size for p in files) / 1e6:,.0f} MB of text)"
        )
        one = promtool_only(files, total, root / "p1", 1)
        two = promtool_only(files, total, root / "p2", 2)
        best = max(one, two)
        print(f"promtool only, 1 process:  {one:>12,.0f} samples/s")
        print(f"promtool only, 2 at once:  {two:>12,.0f} samples/s")
        for p in files:
            p.unlink()
        start = time.monotonic()
        summary = run(sensors, plan, root / "tsdb", root / "work", ledger, args.days, 0, progress=False)
        e2e = summary.samples / (time.monotonic() - start)
        print(
            f"end to end (backfill.run): {e2e:>12,.0f} samples/s = {e2e / best:.2f} x best promtool-only (goal >= 0.70)"
        )
        print(f"blocks: {summary.blocks}, {summary.bytes / summary.total_samples:.2f} bytes/sample")
        if args.full:
            full_plan = make_plan(END, 90, 3 * 365 + 1)
            start = time.monotonic()
            full = run(
                sensors,
                full_plan,
                root / "tsdb-full",
                root / "work-full",
                ledger,
                90,
                3 * 365 + 1,
                progress=True,
            )
            took = time.monotonic() - start
            raw = sum(1 for c in full_plan.chunks if c.kind == "raw")
            print(full.text())
            print(
                f"full default backfill: {took:.0f} s (goal <= 180 s), {raw} raw chunks, "
                f"{full.samples / took:,.0f} samples/s, {full.bytes / full.total_samples:.2f} bytes/sample"
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
