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
import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from backfill.ingest import Target
from backfill.plan import Plan, make_plan
from backfill.run import BackfillError, Summary, run, wait_for_history
from homewatt import promapi, streams
from homewatt.config import REPO
from homewatt.fleet import FleetError, load_fleet
from homewatt.meter import Ledger
from homewatt.supervisor import die_with_parent

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


def upload_commands(
    target: Target, objstore_config: str, labels: dict[str, dict[str, str]]
) -> list[list[str]]:
    return [
        [
            "thanos",
            "tools",
            "bucket",
            "upload-blocks",
            f"--objstore.config-file={objstore_config}",
            f"--path={target.dir(stream)}",
            *streams.label_flags(labels[stream]),
        ]
        for stream in streams.STREAMS
    ]


def upload(commands: list[list[str]]) -> None:
    if shutil.which("thanos") is None:
        raise BackfillError(
            "--upload needs the thanos binary on PATH (the homewatt Docker image has it); "
            "the blocks are written: run the printed commands where thanos is installed"
        )
    for cmd in commands:
        proc = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=die_with_parent)
        if proc.returncode != 0:
            raise BackfillError(f"{shlex.join(cmd)} failed: {proc.stderr.strip()[-2000:]}")


def backfill(args: argparse.Namespace) -> Summary:
    data = Path(args.data).resolve()
    fleet = load_fleet(args.fleet)
    labels = {s: streams.stream_labels(s, Path(args.prometheus_config)) for s in streams.STREAMS}
    if args.upload and not args.bucket_dir:
        raise BackfillError("--upload goes with --bucket-dir")
    if args.bucket_dir:
        target = Target(Path(args.bucket_dir).resolve(), per_stream=True)
        work = target.root / ".backfill"
    else:
        target = Target(data / "prometheus")
        work = data / "backfill"
    state = work / "state.json"
    end = args.end
    if end is None and state.exists():
        end = json.loads(state.read_text()).get("identity", {}).get("live_start")
    if end is None:
        end = live_start_from_prometheus(args.prometheus_url)
    plan: Plan = make_plan(end, args.raw_days, args.history_days)
    ledger = Ledger(fleet.sensors, data / "ledger")
    summary = run(
        fleet.sensors,
        plan,
        target,
        work,
        ledger,
        args.raw_days,
        args.history_days,
        workers=args.workers,
        progress=not args.no_progress,
        labels=labels,
    )
    if target.per_stream:
        for d in target.dirs():  # upload-blocks wants them, even emptied by hand after an upload
            d.mkdir(parents=True, exist_ok=True)
        summary.upload = upload_commands(target, args.objstore_config, labels)
        if args.upload:
            upload(summary.upload)
    if args.wait_url:
        wait_for_history(args.wait_url, plan, len(fleet), args.wait_timeout)
    return summary


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s backfill %(message)s", datefmt="%H:%M:%S")
    args = parser().parse_args(argv)
    try:
        summary = backfill(args)
    except (BackfillError, FleetError, promapi.PromError, streams.StreamError) as exc:
        print(f"backfill: {exc}", file=sys.stderr)
        return 1
    print(summary.text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
