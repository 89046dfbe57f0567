"""python -m backfill: write homewatt's history into Prometheus's TSDB, once.

Writes, for every sensor of the fleet, the per-second power and energy counter
of the RAW_DAYS that end where live data starts, the 1m and 15m aggregates of
that span, and HISTORY_DAYS of quarter-hour history before it (the 15m series
and the counter at every quarter-hour).  Blocks appear in DATA/prometheus
atomically; a running Prometheus loads them within a minute.  Re-running is
safe: chunks already written are skipped, an interrupted run is completed.

With --bucket-dir the blocks go instead to one directory per Thanos block stream
(BUCKET_DIR/raw, BUCKET_DIR/quarter; see thanos/README.md), labelled for Thanos,
and the run prints the `thanos tools bucket upload-blocks` commands that put
them into object storage (--upload runs them).
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import sys
from pathlib import Path

from backfill.api import Options, backfill
from backfill.run import BackfillError
from homewatt import promapi, streams
from homewatt.config import HISTORY_DAYS, RAW_DAYS, REPO
from homewatt.fleet import FleetError


def _parse_time(text: str) -> int:
    t = dt.datetime.fromisoformat(text)
    if t.tzinfo is None:
        raise argparse.ArgumentTypeError("give a timezone offset, e.g. 2026-11-30T01:00:00+00:00")
    return int(t.timestamp())


def parser() -> argparse.ArgumentParser:
    env = os.environ
    p = argparse.ArgumentParser(
        prog="python -m backfill", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--data",
        default=env.get("HOMEWATT_DATA", "./data"),
        help="data directory: blocks go to DATA/prometheus, state to DATA/backfill (env HOMEWATT_DATA)",
    )
    p.add_argument(
        "--fleet",
        default=env.get("HOMEWATT_FLEET"),
        help="fleet file (env HOMEWATT_FLEET; default: the bundled fleet)",
    )
    p.add_argument(
        "--end",
        type=_parse_time,
        help="first live second (ISO 8601 with offset): the raw window ends just before it. "
        "Default: remembered from an earlier run, else the earliest live sample in Prometheus",
    )
    p.add_argument(
        "--prometheus-url",
        default=env.get("PROMETHEUS_URL", "http://127.0.0.1:9090"),
        help="where to find the live data's start when --end is not given (env PROMETHEUS_URL)",
    )
    p.add_argument(
        "--pushgateway-url",
        default=env.get("PUSHGATEWAY_URL"),
        help="where the progress is pushed for the alerts (env PUSHGATEWAY_URL; default: nowhere)",
    )
    p.add_argument(
        "--raw-days",
        type=float,
        default=float(env.get("HOMEWATT_RAW_DAYS", RAW_DAYS)),
        help="days of per-second data before the live start (env HOMEWATT_RAW_DAYS; default 90)",
    )
    p.add_argument(
        "--history-days",
        type=float,
        default=float(env.get("HOMEWATT_HISTORY_DAYS", HISTORY_DAYS)),
        help="days of quarter-hour history before the raw window (env HOMEWATT_HISTORY_DAYS; "
        "default 1096, three years)",
    )
    p.add_argument(
        "--bucket-dir",
        help="write the blocks here, one directory per Thanos block stream, instead of into "
        "DATA/prometheus (state in BUCKET_DIR/.backfill)",
    )
    p.add_argument(
        "--objstore-config",
        default=str(REPO / "thanos" / "objstore.filesystem.yml"),
        help="the Thanos object-store config the printed upload commands use "
        "(default: thanos/objstore.filesystem.yml)",
    )
    p.add_argument(
        "--upload",
        action="store_true",
        help="with --bucket-dir: also run the upload commands (needs thanos, as in the Docker image)",
    )
    p.add_argument(
        "--wait-url",
        help="when done, wait until this Prometheus or Thanos Query answers for the backfilled history "
        "(up to --wait-timeout seconds), so jobs started after the backfill find it",
    )
    p.add_argument(
        "--thanos",
        default=str(REPO / "bin" / "thanos") if (REPO / "bin" / "thanos").exists() else "thanos",
        help="the thanos binary --upload runs (default: bin/thanos when built, else thanos on PATH)",
    )
    p.add_argument("--wait-timeout", type=float, default=600.0, help="seconds (default 600)")
    p.add_argument(
        "--prometheus-config",
        default=env.get("HOMEWATT_PROMETHEUS_CONFIG", str(streams.DEFAULT_CONFIG)),
        help="the live Prometheus's config: its external labels go into every block's meta.json "
        "(env HOMEWATT_PROMETHEUS_CONFIG; default prometheus/prometheus.yml)",
    )
    p.add_argument("--workers", type=int, default=2, help="promtool processes at once (default 2)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def options(args: argparse.Namespace) -> Options:
    return Options(
        data=Path(args.data).resolve(),
        fleet=args.fleet,
        end=args.end,
        prometheus_url=args.prometheus_url,
        pushgateway_url=args.pushgateway_url or None,
        raw_days=args.raw_days,
        history_days=args.history_days,
        bucket_dir=Path(args.bucket_dir).resolve() if args.bucket_dir else None,
        objstore_config=Path(args.objstore_config),
        upload=args.upload,
        thanos=args.thanos,
        wait_url=args.wait_url,
        wait_timeout=args.wait_timeout,
        prometheus_config=Path(args.prometheus_config),
        workers=args.workers,
        progress=not args.no_progress,
    )


def options_from_argv(argv: list[str]) -> Options:
    """The Options a command line means, as `python -m backfill` would run it."""
    return options(parser().parse_args(argv))


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s backfill %(message)s", datefmt="%H:%M:%S")
    args = parser().parse_args(argv)
    try:
        summary = backfill(options(args))
    except (BackfillError, FleetError, promapi.PromError, streams.StreamError) as exc:
        print(f"backfill: {exc}", file=sys.stderr)
        return 1
    print(summary.text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
