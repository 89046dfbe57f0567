"""Backfill throughput on this machine, on the same data three ways.

1. promtool only: the OpenMetrics chunk files are written first (not timed), then
   promtool ingests them, one process at a time and two at once; the best of the
   two is the ceiling for the whole pipeline.
2. end to end: `backfill.run` on the same span (model -> text -> promtool ->
   blocks moved into a TSDB directory), timed from start to summary.
3. bytes per sample of the resulting blocks.

Goals: end-to-end >= 0.7 x the best promtool-only rate; with --full, the default
fleet's 90 days at 1 s (plus the 3-year history) in <= 3 minutes.

    python benchmarks/backfill_rate.py            # 9 days of raw data, default fleet
    python benchmarks/backfill_rate.py --full     # also the real thing: 90 days + 3 years
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backfill import generate  # noqa: E402
from backfill.ingest import promtool_blocks  # noqa: E402
from backfill.plan import RAW_BLOCK, make_plan  # noqa: E402
from backfill.run import run  # noqa: E402
from homewatt.fleet import load_fleet  # noqa: E402
from homewatt.meter import Ledger, counter  # noqa: E402

END = 1_795_996_800  # 2026-11-30 00:00 UTC


def promtool_only(files: list[Path], samples: int, out: Path, workers: int) -> float:
    shutil.rmtree(out, ignore_errors=True)
    start = time.monotonic()
    with cf.ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda f: promtool_blocks(f, out / f.stem, RAW_BLOCK), files))
    took = time.monotonic() - start
    return samples / took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--days", type=float, default=9.0, help="raw days for the comparison (default 9)")
    ap.add_argument("--full", action="store_true", help="also time the default 90 days + 3 years")
    args = ap.parse_args()
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
