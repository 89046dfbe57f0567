"""Disk per sensor per year for each storage tier, from blocks this project writes.

The retention table of thanos/README.md comes from this script's output.

- raw (1 s power and counter, 1m series) and quarter (15m series, counter every
  quarter-hour): the backfill writes RAW_DAYS and QUARTER_DAYS of the default
  fleet into a bucket directory (the same code path as `python -m backfill
  --bucket-dir`); bytes per sample are measured on those blocks.
- 5m and 1h downsampled: no Thanos binary runs here, so their cost is
  estimated the way Thanos stores them: per window and source series, five
  aggregates (count, sum, min, max, counter), each an XOR-encoded chunk.  The
  script computes those aggregates of the same power and counter series with
  numpy, writes them as five series per source series and lets promtool build
  the blocks; bytes per aggregate sample are measured on those.  The 1m series
  are assumed to downsample like the 1 s ones.

    python benchmarks/tier_sizes.py [--raw-days 14] [--quarter-days 365]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backfill.ingest import Target, dir_bytes, promtool_blocks  # noqa: E402
from backfill.openmetrics import EOF_MARK, family_header, series_lines  # noqa: E402
from backfill.plan import make_plan  # noqa: E402
from backfill.run import run  # noqa: E402
from homewatt import contract, loadmodel, streams  # noqa: E402
from homewatt.fleet import load_fleet  # noqa: E402
from homewatt.meter import Ledger  # noqa: E402

END = 1_795_996_800  # 2026-11-30 00:00 UTC
YEAR = 365 * 86400
# Retention in days per tier, as docker-compose.yml sets it.
RETENTION = {"raw": 40, "5m": 1100, "1h": 1100, "quarter": 1100, "prometheus": 3}


def measure_streams(root: Path, raw_days: float, quarter_days: float) -> dict[str, float]:
    """Bytes per sample of each stream's blocks, written by the backfill itself."""
    sensors = load_fleet().sensors
    target = Target(root / "bucket", per_stream=True)
    labels = {s: streams.stream_labels(s) for s in contract.STREAMS}
    plan = make_plan(END, raw_days, quarter_days)
    summary = run(
        sensors, plan, target, root / "work", Ledger(sensors, root / "ledger"), raw_days, quarter_days,
        progress=True, labels=labels,
    )  # fmt: skip
    out = {}
    for stream in contract.STREAMS:
        blocks = [b for b in target.dir(stream).iterdir() if (b / "meta.json").exists()]
        samples = sum(_samples(b) for b in blocks)
        out[stream] = sum(dir_bytes(b) for b in blocks) / samples
    print(f"backfill: {summary.total_samples:,} samples in {summary.blocks} blocks, {summary.seconds:.0f} s")
    return out


def _samples(block: Path) -> int:
    return int(json.loads((block / "meta.json").read_text())["stats"]["numSamples"])


def measure_downsampled(root: Path, days: int, window: int) -> float:
    """Bytes per aggregate sample of Thanos-like downsampled data at `window` seconds."""
    sensors = load_fleet().sensors
    start = END - days * 86400
    names = ("count", "sum", "min", "max", "counter")
    lines: dict[str, list[bytes]] = {n: [] for n in names}
    for s in sensors:
        p = loadmodel.power(s, np.arange(start, END, dtype=np.int64)).astype(np.int64)
        ts = start + window * np.arange(1, p.size // window + 1, dtype=np.int64) - 1
        for source, series in (("power", p), ("energy", np.cumsum(p))):
            values = series.reshape(-1, window)
            aggs = {
                "count": np.full(values.shape[0], window, dtype=np.int64),
                "sum": values.sum(axis=1),
                "min": values.min(axis=1),
                "max": values.max(axis=1),
                "counter": values[:, -1],
            }
            for n in names:
                lines[n].append(series_lines(f'agg_{n}{{sensor="{s.id}",source="{source}"}}', aggs[n], ts))
    parts = []
    for n in names:
        parts.append(family_header(f"agg_{n}", "gauge", f"downsampling aggregate {n}"))
        parts.extend(lines[n])
    parts.append(EOF_MARK)
    text = root / f"agg{window}.om"
    text.write_bytes(b"".join(parts))
    blocks = promtool_blocks(text, root / f"agg{window}", 486 * 3600)
    samples = len(names) * len(sensors) * 2 * (days * 86400 // window)
    return sum(dir_bytes(b) for b in blocks) / samples


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--raw-days", type=float, default=14.0, help="days at 1 s to measure (default 14)")
    ap.add_argument("--quarter-days", type=float, default=365.0, help="days of quarter-hours (default 365)")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="homewatt-tiers-"))
    started = time.monotonic()
    try:
        bps = measure_streams(root, args.raw_days, args.quarter_days)
        bps["5m"] = measure_downsampled(root, 28, 300)
        bps["1h"] = measure_downsampled(root, 84, 3600)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    # Samples per sensor-year of each tier.
    samples = {
        "raw": 2 * YEAR + 2 * YEAR // 60,  # power + counter at 1 s, avg1m + increase1m
        "5m": 4 * 5 * YEAR // 300,  # 4 source series x 5 aggregates per window
        "1h": 4 * 5 * YEAR // 3600,
        "quarter": 3 * YEAR // 900,  # avg15m, increase15m, counter at the quarter-hour
        "prometheus": 2 * YEAR + 2 * YEAR // 60 + 2 * YEAR // 900,
    }
    bps["prometheus"] = bps["raw"]
    rows = [
        ("raw 1 s + 1m series (bucket)", "raw"),
        ("5m downsampled (bucket, estimate)", "5m"),
        ("1h downsampled (bucket, estimate)", "1h"),
        ("15m series + quarter-hour counter", "quarter"),
        ("Prometheus local TSDB (Docker stack)", "prometheus"),
    ]
    print(
        f"\n{'tier':<38} {'samples/sensor-year':>20} {'B/sample':>9} {'MB/sensor-year':>15} {'kept':>7} {'MB/sensor held':>15}"
    )
    total = 0.0
    for label, key in rows:
        per_year = samples[key] * bps[key] / 1e6
        held = per_year * RETENTION[key] / 365
        total += held
        print(
            f"{label:<38} {samples[key]:>20,} {bps[key]:>9.2f} {per_year:>15,.2f} {RETENTION[key]:>5} d {held:>15,.2f}"
        )
    print(f"{'all tiers, steady state':<38} {'':>20} {'':>9} {'':>15} {'':>7} {total:>15,.2f}")
    print(f"\ntook {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
