"""python -m backfill: write homewatt's history into Prometheus's TSDB, once.

Writes, for every sensor of the fleet, the per-second power and energy counter
of the RAW_DAYS that end where live data starts, the 1m and 15m aggregates of
that span, and HISTORY_DAYS of quarter-hour history before it (the 15m series
and the counter at every quarter-hour).  Blocks appear in DATA/prometheus
atomically; a running Prometheus loads them within a minute.  Re-running is
safe: chunks already written are skipped, an interrupted run is completed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
import time
from pathlib import Path

from backfill.plan import Plan, make_plan
from backfill.run import BackfillError, Summary, run
from homewatt import promapi
from homewatt.fleet import FleetError, load_fleet
from homewatt.meter import Ledger

RAW_DAYS = 90.0
HISTORY_DAYS = 3 * 365 + 1.0


def live_start_from_prometheus(url: str, lookback_hours: int = 6) -> int:
    """The first second metered live: the earliest exporter sample Prometheus holds."""
    now = time.time()
    result = promapi.query(url, f"elec_power_watts{{job='homewatt-exporter'}}[{lookback_hours}h]", at=now)
    firsts = [float(r["values"][0][0]) for r in result if r["values"]]
    if not firsts:
        raise BackfillError(f"no live samples in Prometheus at {url} yet: start the stack, or pass --end")
    first = min(firsts)
    if first < now - lookback_hours * 3600 + 120:
        raise BackfillError(
            f"Prometheus holds live data older than {lookback_hours} h, so where it starts is unknown: "
            "pass --end with the first live second"
        )
    return int(first)


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
    p.add_argument("--workers", type=int, default=2, help="promtool processes at once (default 2)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def backfill(args: argparse.Namespace) -> Summary:
    data = Path(args.data).resolve()
    fleet = load_fleet(args.fleet)
    work = data / "backfill"
    state = work / "state.json"
    end = args.end
    if end is None and state.exists():
        end = json.loads(state.read_text()).get("identity", {}).get("live_start")
    if end is None:
        end = live_start_from_prometheus(args.prometheus_url)
    plan: Plan = make_plan(end, args.raw_days, args.history_days)
    ledger = Ledger(fleet.sensors, data / "ledger")
    return run(
        fleet.sensors,
        plan,
        data / "prometheus",
        work,
        ledger,
        args.raw_days,
        args.history_days,
        workers=args.workers,
        progress=not args.no_progress,
    )


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s backfill %(message)s", datefmt="%H:%M:%S")
    args = parser().parse_args(argv)
    try:
        summary = backfill(args)
    except (BackfillError, FleetError, promapi.PromError) as exc:
        print(f"backfill: {exc}", file=sys.stderr)
        return 1
    print(summary.text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
