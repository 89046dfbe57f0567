"""python -m partner_job: the nightly partner export.

run --at ISO8601          run the window ending at that local midnight, now
next --after ISO8601 -n N print the next N fire times (ISO 8601 with offset)
deliver                   retry what the outbox still holds
outbox                    list what is pending and what the partner refused
requeue KEY [KEY ...]     send refused payloads again (after fixing the cause)
schedule                  run forever: every local midnight, catch-up once, retry the outbox
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import itertools
import logging
import signal
import sys
import urllib.parse

from homewatt.config import Settings, read_token
from homewatt.contract import USAGE_SHARE
from homewatt.fleet import FleetError, load_fleet
from homewatt.window import Window, fire_times
from partner_job import job
from partner_job.client import PartnerClient
from partner_job.outbox import Outbox
from partner_job.scheduler import Scheduler, State

log = logging.getLogger("partner_job")


def _when(text: str) -> dt.datetime:
    t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if t.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r}: give a UTC offset, e.g. 2026-12-01T00:00:00+01:00")
    return t


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m partner_job",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run one window by hand")
    r.add_argument("--at", type=_when, required=True, help="the local midnight ending the window (ISO 8601)")
    n = sub.add_parser("next", help="print the next fire times")
    n.add_argument("--after", type=_when, required=True)
    n.add_argument("--count", "-n", type=int, default=1)
    sub.add_parser("deliver", help="retry the outbox now")
    sub.add_parser("outbox", help="list pending and rejected payloads")
    rq = sub.add_parser("requeue", help="move rejected payloads back to pending")
    rq.add_argument("keys", nargs="+", metavar="KEY", help="an Idempotency-Key, e.g. s-001:2026-11-30")
    s = sub.add_parser("schedule", help="run at every local midnight until stopped")
    s.add_argument(
        "--retry-every", type=float, default=300.0, help="seconds between outbox retries (default 300)"
    )
    for p in (r, sub.choices["deliver"], s):
        p.add_argument("--no-progress", action="store_true")
        p.add_argument(
            "--send-workers",
            type=int,
            metavar="N",
            help="requests to the partner in flight at most (default HOMEWATT_PARTNER_SEND_WORKERS, 4)",
        )
    for p in (r, s):
        p.add_argument(
            "--fetch-workers",
            type=int,
            metavar="N",
            help="range requests to the history in flight (default HOMEWATT_PARTNER_FETCH_WORKERS, 3)",
        )
        p.add_argument(
            "--fetch-batch",
            type=int,
            metavar="N",
            help="sensors per range request (default HOMEWATT_PARTNER_FETCH_BATCH, 5)",
        )
    return ap


def _client(settings: Settings) -> PartnerClient:
    return PartnerClient(settings.partner_url, read_token())


SHOWN_PROBLEMS = 20  # a night of 10,000 failures is summed up, `outbox` lists them all


def _report(settings: Settings, stats: job.Stats, what: str) -> None:
    print(stats.line(what))
    for p in stats.problems[:SHOWN_PROBLEMS]:
        print(f"  {p}")
    if len(stats.problems) > SHOWN_PROBLEMS:
        print(
            f"  ... and {len(stats.problems) - SHOWN_PROBLEMS} more "
            "(the log has each; `python -m partner_job outbox` lists what is pending)"
        )
    q = urllib.parse.urlencode({"g0.expr": USAGE_SHARE.name, "g0.tab": "1"})
    print(f"  breakdowns: {settings.prometheus_url}/graph?{q}   outbox: {settings.data / 'outbox'}")
    print(f"  pushed to: {settings.pushgateway_url}/   (partner: {settings.partner_url})")


def show_outbox(outbox: Outbox) -> int:
    paths, rejected = outbox.paths(), outbox.rejected()
    print(f"{len(paths)} pending in {outbox.pending_dir}:")
    for e in outbox.scan():
        written = dt.datetime.fromtimestamp(e.created, dt.UTC).isoformat() if e.created else "?"
        print(f"  {e.key}  written {written}, {e.attempts} attempts, last error: {e.last_error or '-'}")
    print(f"{len(rejected)} rejected in {outbox.rejected_dir} (requeue KEY sends one again):")
    for r in rejected:
        print(f"  {r['key']}  HTTP {r['status']}: {r['problem']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s partner_job %(levelname)s %(message)s")
    settings = Settings.from_env()
    try:
        fleet = load_fleet(settings.fleet)
    except FleetError as exc:
        print(f"partner_job: {exc}", file=sys.stderr)
        return 2
    tz = fleet.timezone  # the window is 30 local days to local midnight, where the homes are
    if args.cmd == "next":
        for t in itertools.islice(fire_times(args.after, tz), args.count):
            print(t.isoformat())
        return 0
    outbox = Outbox(settings.data / "outbox")
    if args.cmd == "outbox":
        return show_outbox(outbox)
    if args.cmd == "requeue":
        for key in args.keys:
            try:
                entry = outbox.requeue(key)
            except KeyError as exc:
                print(f"partner_job: {exc.args[0]}", file=sys.stderr)
                return 2
            print(f"{entry.key}: back in {outbox.pending_dir}; the next retry sends it")
        job.report_outbox(settings, outbox)
        return 0
    sensors = fleet.ids()
    try:
        client = _client(settings)
    except (RuntimeError, OSError) as exc:
        print(f"partner_job: {exc}", file=sys.stderr)
        return 2
    progress = not args.no_progress
    workers = {k: getattr(args, k, None) for k in ("fetch_workers", "fetch_batch", "send_workers")}
    if any(n is not None and n < 1 for n in workers.values()):
        print(
            "partner_job: --fetch-workers, --fetch-batch and --send-workers take 1 or more", file=sys.stderr
        )
        return 2
    if args.cmd == "run":
        try:
            Window.ending(args.at, tz)
        except ValueError as exc:
            print(f"partner_job: {exc}", file=sys.stderr)
            return 2
        stats = job.run(settings, sensors, args.at, client, progress, tz, **workers)
        _report(settings, stats, f"window ending {args.at.isoformat()}")
        return 0 if not stats.failed and not stats.rejected else 1
    if args.cmd == "deliver":
        stats = job.deliver(settings, client, outbox, progress, args.send_workers)
        _report(settings, stats, "outbox")
        return 0 if not stats.failed and not stats.rejected else 1

    def run_midnight(midnight: dt.datetime) -> None:
        _report(
            settings,
            job.run(settings, sensors, midnight, client, progress, tz, **workers),
            f"window ending {midnight.isoformat()}",
        )

    def deliver() -> None:
        if outbox.paths():
            _report(
                settings, job.deliver(settings, client, outbox, progress, args.send_workers), "outbox retry"
            )
        else:
            job.report_outbox(settings, outbox)  # a requeued or deleted payload stops counting

    sched = Scheduler(
        State(settings.data / "partner_job" / "state.json"),
        run_midnight,
        deliver,
        retry_every=args.retry_every,
        tz=tz,
    )
    signal.signal(signal.SIGTERM, lambda *_: sched.stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        sched.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
