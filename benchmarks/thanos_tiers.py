"""The Thanos tier measured on the real binary (bin/thanos): disk per tier, History query time.

Sets up the long-term tier as tests/test_thanos.py does: the backfill writes the
raw stream (RAW_DAYS at 1 s ending on a 14-day compaction boundary at least 3 days
ago) and the quarter stream (HISTORY_DAYS of quarter-hours before it) into bucket
directories, `thanos tools bucket upload-blocks` puts them into a filesystem bucket,
then two more days of both streams stand in for what the sidecar and the Ruler
upload later, so that the 14-day window is compacted and downsampled to 5m and 1h.
Each stream's compactor runs one iteration.  Only that window reaches 5m and 1h:
the later days' blocks are shorter than the 40 h Thanos wants before it
downsamples.  With the default 365 days of quarter-hours, the 3-year History
range finds data in its last year only.

1. Disk: for every tier, the blocks' meta.json `stats.numSamples` and the bytes of
   their `chunks/` and `index` on disk, before compaction (as uploaded) and after.
   In a downsampled block a sample as numSamples counts it is one window of one
   series (Thanos's AggrChunk counts the windows of its `count` aggregate); each
   window holds five aggregates (count, sum, min, max, counter).  MB per
   sensor-year scales bytes per sample by what a sensor makes in a year:
   raw 2 x 31,536,000 (power, counter at 1 s) + 2 x 525,600 (avg1m, increase1m);
   5m and 1h the same 4 series per 300 s / 3600 s window; quarter 3 x 35,040
   (avg15m, increase15m, the counter's reading15m).
2. Time: every History dashboard query (tests/grafana_emulation.py, as Grafana
   sends it; to Query with Grafana's History parameters) against Thanos Query
   (store gateway over the compacted bucket) and against a standalone Prometheus
   over a copy of the uploaded blocks, interleaved, in the same run.  A dashboard
   load sends its queries one after another; its time is the sum of their round
   trips (localhost HTTP and JSON decoding included).

    python benchmarks/thanos_tiers.py [--sensors 1] [--raw-days 14] [--history-days 365] [--runs 5]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from homewatt import promapi  # noqa: E402
from homewatt.config import REPO, Settings  # noqa: E402
from homewatt.contract import DAY, MINUTE, QUARTER_HOUR, QUARTER_STREAM, RAW_STREAM, STREAM_LABEL, STREAMS  # noqa: E402
from homewatt.fleet import load_fleet  # noqa: E402
from homewatt.procs import wait_until  # noqa: E402
from stack.services import Stack  # noqa: E402
from stack.supervisor import Supervisor  # noqa: E402
from stack.thanos import BINARY, Thanos, Timings  # noqa: E402
from tests import bucket_setup  # noqa: E402
from tests import grafana_emulation as ge  # noqa: E402
from tests.conftest import stack_env, thanos_env, write_fleet  # noqa: E402

YEAR = 365 * DAY
FORTNIGHT = 14 * DAY  # Thanos's second compaction level
LATER_DAYS = 2  # after the boundary: what the sidecar and the Ruler would upload
# What Grafana's History datasource sends (grafana/provisioning/datasources/homewatt.yaml).
GRAFANA = {"max_source_resolution": "auto", "dedup": "true", "partial_response": "false"}
SPANS: list[tuple[str, tuple[str, str] | None]] = [
    ("30 days (default)", None),
    ("1 year", ("now-1y", "now")),
    ("3 years", ("now-3y", "now")),
]
# (label, stream, resolution in ms, samples a sensor makes in a year at that tier)
TIERS = [
    ("raw 1 s + 1m series", RAW_STREAM, 0, 2 * YEAR + 2 * YEAR // MINUTE),
    ("raw, 5m downsampled", RAW_STREAM, 300_000, 4 * YEAR // 300),
    ("raw, 1h downsampled", RAW_STREAM, 3_600_000, 4 * YEAR // 3600),
    ("quarter: 15m series + reading15m", QUARTER_STREAM, 0, 3 * YEAR // QUARTER_HOUR),
]


def metas(bucket: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every block of the bucket not marked for deletion, with its meta.json."""
    return [
        (d, json.loads((d / "meta.json").read_text()))
        for d in sorted(bucket.iterdir())
        if (d / "meta.json").exists() and not (d / "deletion-mark.json").exists()
    ]


def block_bytes(block: Path) -> tuple[int, int]:
    """Bytes of chunks/ and of index: the block's data on disk (meta.json and marks left out)."""
    chunks = sum(f.stat().st_size for f in (block / "chunks").iterdir() if f.is_file())
    return chunks, (block / "index").stat().st_size


def tier_sizes(bucket: Path) -> dict[tuple[str, int], dict[str, int]]:
    out: dict[tuple[str, int], dict[str, int]] = {}
    for block, m in metas(bucket):
        key = (m["thanos"]["labels"][STREAM_LABEL], int(m["thanos"]["downsample"]["resolution"]))
        t = out.setdefault(
            key, {"blocks": 0, "span_ms": 0, "series": 0, "samples": 0, "chunks": 0, "index": 0, "windows": 0}
        )
        t["blocks"] += 1
        t["span_ms"] += int(m["maxTime"]) - int(m["minTime"])
        t["series"] += int(m["stats"]["numSeries"])
        t["samples"] += int(m["stats"]["numSamples"])
        chunks, index = block_bytes(block)
        t["chunks"] += chunks
        t["index"] += index
        if key[1]:  # windows of every series over the block's span
            t["windows"] += int(m["stats"]["numSeries"]) * (int(m["maxTime"]) - int(m["minTime"])) // key[1]
    return out


def metric(url: str, name: str) -> float:
    text = requests.get(f"{url}/metrics", timeout=5).text
    return sum(
        float(line.split()[-1]) for line in text.splitlines() if line.split("{")[0].split(" ")[0] == name
    )


def compact_once(sup: Supervisor, thanos: Thanos, stream: str) -> None:
    """One stream's compactor until it has finished an iteration (compaction and downsampling)."""
    service = thanos.compactor(stream)
    sup.run(service)
    url = "http://" + thanos.addr(service.name.removeprefix("thanos-") + "-http")
    wait_until(lambda: metric(url, "thanos_compact_iterations_total") >= 1, 900, f"{service.name} iteration")
    if metric(url, "thanos_compact_halted"):
        raise RuntimeError(f"{service.name} halted: {sup.tail(service)}")
    sup.stop_one(service)


def run_query(url: str, q: ge.Query, extra: dict[str, str] | None) -> int:
    """Send one panel query; the number of points it answered."""
    if q.instant:
        return len(promapi.query(url, q.expr, at=q.end, extra=extra))
    return sum(
        len(r["values"]) for r in promapi.query_range(url, q.expr, q.start, q.end, q.step, extra=extra)
    )


def load_dashboard(
    url: str, qs: list[ge.Query], extra: dict[str, str] | None
) -> tuple[list[float], list[int]]:
    """One dashboard load: each query's round trip in seconds, and its points."""
    times, points = [], []
    for q in qs:
        start = time.perf_counter()
        points.append(run_query(url, q, extra))
        times.append(time.perf_counter() - start)
    return times, points


def size_table(
    before: dict[tuple[str, int], dict[str, int]], after: dict[tuple[str, int], dict[str, int]], sensors: int
) -> None:
    print(
        "\nDisk per tier (bytes = chunks/ + index; a downsampled sample = one window of one series, 5 aggregates)"
    )
    print(
        f"{'tier':<34} {'state':<10} {'blocks':>6} {'days':>6} {'series':>6} {'numSamples':>11} {'chunks B':>11} {'index B':>9} "
        f"{'B/sample':>9} {'(chunks)':>9} {'samples/sensor-yr':>18} {'MB/sensor-yr':>13}"
    )
    for label, stream, res, per_year in TIERS:
        for state, sizes in (("uploaded", before), ("compacted", after)):
            t = sizes.get((stream, res))
            if t is None:
                continue
            bps = (t["chunks"] + t["index"]) / t["samples"]
            print(
                f"{label:<34} {state:<10} {t['blocks']:>6} {t['span_ms'] / (DAY * 1000):>6.1f} {t['series']:>6} {t['samples']:>11,} {t['chunks']:>11,} "
                f"{t['index']:>9,} {bps:>9.3f} {t['chunks'] / t['samples']:>9.3f} {per_year:>18,} {bps * per_year / 1e6:>13.3f}"
            )
    # What numSamples counts in the downsampled blocks: windows per series over the blocks' span.
    for _, stream, res, _ in TIERS:
        t = after.get((stream, res))
        if res and t:
            print(
                f"  {res // 60_000} min blocks: numSamples / (series x block span / window) = {t['samples'] / t['windows']:.2f}"
                f" ({sensors} sensor(s), {t['series'] / t['blocks']:g} series per block)"
            )


def time_table(results: dict[tuple[str, str], dict[str, Any]], runs: int) -> None:
    print(
        f"\nHistory dashboard, ms: median of {runs} loads after 1 warm-up; a load = its queries in sequence"
    )
    print(f"{'range':<18} {'server':<22} {'queries':>7} {'total ms':>9} {'slowest ms':>11}  slowest panel")
    for span, _ in SPANS:
        for server in ("Thanos Query", "Prometheus (native)"):
            r = results[(span, server)]
            totals = [sum(t) for t in r["times"]]
            per_query = [statistics.median(ts) for ts in zip(*r["times"], strict=True)]
            slow = max(range(len(per_query)), key=per_query.__getitem__)
            print(
                f"{span:<18} {server:<22} {len(per_query):>7} {statistics.median(totals) * 1000:>9.1f} "
                f"{per_query[slow] * 1000:>11.1f}  {r['panels'][slow]}"
            )


@contextlib.contextmanager
def serving_tier(sensors: int, raw_days: int, history_days: int) -> Iterator[dict[str, Any]]:
    """A bucket filled as `make up` fills it (RAW_DAYS at 1 s ending on a 14-day boundary, the
    quarter-hours before, two later days), each stream compacted once, served by a store
    gateway and Thanos Query; beside it a standalone Prometheus over a copy of the uploaded
    blocks.  Yields their URLs, the sensor to query, `now`, and the tier sizes before and
    after compaction.  Shared by this benchmark and benchmarks/history_speed.py."""
    now = dt.datetime.now(dt.UTC)
    boundary = (int(now.timestamp()) - 3 * DAY) // FORTNIGHT * FORTNIGHT
    root = Path(tempfile.mkdtemp(prefix="homewatt-thanos-tier-"))
    try:
        fleet_file = write_fleet(root / "fleet.yaml", n=sensors, index_date=now.date())
        sensor = load_fleet(fleet_file).sensors[0].id
        data = root / "data"
        settings = Settings.from_env({**os.environ, **thanos_env(stack_env(data, fleet_file))})
        thanos = Thanos(settings, timings=Timings(**bucket_setup.TEST_TIMINGS))  # keep everything
        objstore = thanos.objstore_config()
        end = dt.datetime.fromtimestamp(boundary, dt.UTC)
        parts: bucket_setup.Parts = {
            "backfill": (end, raw_days, history_days),
            "later": (end + dt.timedelta(days=LATER_DAYS), LATER_DAYS, 0),
        }
        print(
            f"now {now:%Y-%m-%d %H:%M} UTC, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; {sensors} sensor(s), History of {sensor}; raw at 1 s "
            f"{end - dt.timedelta(days=raw_days):%Y-%m-%d} .. {end + dt.timedelta(days=LATER_DAYS):%Y-%m-%d}, "
            f"quarter-hours from {end - dt.timedelta(days=raw_days + history_days):%Y-%m-%d}"
        )
        for name, part in parts.items():
            t0 = time.monotonic()
            summary = bucket_setup.fill(root, data, fleet_file, {name: part}, objstore)[name]
            print(
                f"{name}: {summary.total_samples:,} samples, {summary.blocks} blocks, {time.monotonic() - t0:.0f} s with upload"
            )
        before = tier_sizes(thanos.bucket)
        # The native reference: one Prometheus over a copy of every uploaded block.
        reference = root / "reference"
        bucket_setup.reference_tsdb(root, parts, reference / "prometheus")
        ref_settings = Settings.from_env({**os.environ, **stack_env(reference, fleet_file)})
        with Supervisor(data / "logs") as sup:
            sup.run(Stack(ref_settings).prometheus(standalone=True))
            t0 = time.monotonic()
            for stream in STREAMS:
                compact_once(sup, thanos, stream)
            print(f"compactors: one iteration each, {time.monotonic() - t0:.0f} s")
            after = tier_sizes(thanos.bucket)
            sup.run(thanos.store())
            sup.run(thanos.query(endpoints=[thanos.addr("store-grpc")]))
            store = "http://" + thanos.addr("store-http")
            n = len(metas(thanos.bucket))
            wait_until(
                lambda: metric(store, "thanos_bucket_store_blocks_loaded") == n, 120, f"store with {n} blocks"
            )
            yield {
                "native": ref_settings.prometheus_url,
                "query": settings.history_url,
                "sensor": sensor,
                "now": now,
                "before": before,
                "after": after,
            }
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sensors", type=int, default=1, help="sensors of the default fleet (default 1)")
    ap.add_argument("--raw-days", type=int, default=14, help="days at 1 s before the boundary (default 14)")
    ap.add_argument(
        "--history-days", type=int, default=365, help="days of quarter-hours before (default 365)"
    )
    ap.add_argument(
        "--runs", type=int, default=5, help="timed dashboard loads per range and server (default 5)"
    )
    args = ap.parse_args()
    if not BINARY.exists():
        sys.exit(f"{BINARY} is missing: `make thanos` builds it")
    argv = ["--sensors", str(args.sensors), "--raw-days", str(args.raw_days)]
    argv += ["--history-days", str(args.history_days), "--runs", str(args.runs)]
    print(f"cd {shlex.quote(str(REPO))} && .venv/bin/python benchmarks/thanos_tiers.py {shlex.join(argv)}")
    started = time.monotonic()
    with serving_tier(args.sensors, args.raw_days, args.history_days) as tier:
        native, query, sensor, now = tier["native"], tier["query"], tier["sensor"], tier["now"]
        native_compactions = metric(native, "prometheus_tsdb_compactions_total")
        dashboard = json.loads((REPO / "grafana" / "dashboards" / "history.json").read_text())
        servers = {"Thanos Query": (query, GRAFANA), "Prometheus (native)": (native, None)}
        results: dict[tuple[str, str], dict[str, Any]] = {}
        mismatched: set[str] = set()
        for span, time_range in SPANS:
            qs = ge.queries(dashboard, now, sensor, time_range)
            for server in servers:
                results[(span, server)] = {"times": [], "panels": [q.panel for q in qs]}
            for i in range(args.runs + 1):  # the first load warms caches, not counted
                answers = {}
                for server, (url, extra) in servers.items():
                    times, points = load_dashboard(url, qs, extra)
                    answers[server] = points
                    if i:
                        results[(span, server)]["times"].append(times)
                a, b = answers.values()
                mismatched |= {f"{span}: {q.panel}" for q, x, y in zip(qs, a, b, strict=True) if x != y}
        native_compactions = metric(native, "prometheus_tsdb_compactions_total") - native_compactions
    size_table(tier["before"], tier["after"], args.sensors)
    time_table(results, args.runs)
    if mismatched:
        print(f"points differ between Thanos and native in: {sorted(mismatched)}")
    if native_compactions:
        print(f"note: the native Prometheus compacted {native_compactions:.0f} time(s) during the timing")
    print(f"\ntook {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
