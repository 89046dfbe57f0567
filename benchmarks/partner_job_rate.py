"""Seconds per sensor and peak memory of the nightly partner job, at N sensors.

    python benchmarks/partner_job_rate.py                   # the default fleet's size
    python benchmarks/partner_job_rate.py --sensors 10000   # issue 14's figure

It stores what the job reads: each sensor's energy counter at the 43,201 minute
instants of the window ending 2026-11-30 00:00 Europe/Paris (30 days + the
closing instant), written as OpenMetrics and turned into blocks by
`promtool tsdb create-blocks-from openmetrics`, as the backfill does.  The
counter is the cumulative sum of the load model's power read once a minute
(`loadmodel.power` at the minute instants, x 60 s): deterministic per sensor
(big_fleet's ids and seeds, each a modelled home), cheap (one model instant per
minute instead of 60), and shaped like a home, so that the reference partner's
disaggregation costs what it costs on real minutes.  The TSDB is built once
per N in a cache directory and reused.

Then it starts Prometheus on that TSDB (no compaction while it measures), the
stack's Pushgateway and the reference partner on free ports, and runs the real
job (`job.run`, the settings' readers and senders unless told otherwise) in a
child process, which reports its own peak RSS (getrusage RUSAGE_SELF): the
job's alone.  It prints the seconds per sensor, the CPU seconds per sensor of
the job and of each server (on a shared machine the CPU is the steadier figure),
the peak RSS and the bytes sent.  Goal (issue 14): 10,000 sensors in under an
hour, <= 0.36 s per sensor including the send.

The stack's Pushgateway checks every push against every group it holds, so a
push costs time in proportion to the sensors already pushed;
`--pushgateway-flag=--push.disable-consistency-check` measures without that check.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import contextlib
import dataclasses
import datetime as dt
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backfill.generate import RAW_LABELS  # noqa: E402
from backfill.ingest import dir_bytes, promtool_blocks  # noqa: E402
from backfill.openmetrics import EOF_MARK, family_header, series_lines  # noqa: E402
from benchmarks._fleets import big_fleet  # noqa: E402
from benchmarks._proc import cpu_seconds  # noqa: E402
from homewatt import loadmodel  # noqa: E402
from homewatt.config import Settings, hostport  # noqa: E402
from homewatt.contract import ENERGY, HOUR, MINUTE  # noqa: E402
from homewatt.fleet import Sensor, load_fleet  # noqa: E402
from homewatt.procs import free_port, http_ok  # noqa: E402
from homewatt.window import Window, midnight  # noqa: E402
from partner_job import job  # noqa: E402
from partner_job.client import PartnerClient  # noqa: E402
from stack.services import STANDALONE_RETENTION, Stack, binary  # noqa: E402
from stack.supervisor import Service, Supervisor  # noqa: E402

AT = midnight(dt.date(2026, 11, 30))  # Europe/Paris: the window is Oct 31 .. Nov 30
GOAL = 0.36  # s per sensor: 10,000 sensors in an hour
# promtool cuts blocks at multiples of its block length since the epoch, and only
# takes lengths of 2 h x 3^k: 54 h makes 14 blocks of the window, none overlapping.
BLOCK = 54 * HOUR
GROUP = 250  # sensors modelled and formatted at once (memory: GROUP x 3,240 minutes)
FORMAT = 1  # bump when the stored data changes: older caches are rebuilt


def bench_sensors(n: int) -> tuple[Sensor, ...]:
    """big_fleet's ids and seeds; a replayed or device base home is modelled like the others."""
    return tuple(dataclasses.replace(s, replay=None, device=None) for s in big_fleet(n, dt.date(2026, 9, 1)))


def spans(window: Window) -> list[tuple[int, int]]:
    """The window's minute instants [first, last) cut at promtool's block boundaries."""
    first, stop = window.start_ts, window.end_ts + MINUTE  # the closing instant is read too
    out = []
    t = first
    while t < stop:
        end = min(stop, (t // BLOCK + 1) * BLOCK)
        out.append((t, end))
        t = end
    return out


def span_text(path: Path, sensors: tuple[Sensor, ...], carry: np.ndarray, span: tuple[int, int]) -> None:
    """One span's OpenMetrics file; `carry` (J, per sensor) is each counter at the span's start, updated."""
    ts = np.arange(span[0], span[1], MINUTE, dtype=np.int64)
    with path.open("wb") as fh:
        fh.write(family_header(ENERGY.family, ENERGY.kind, ENERGY.help))
        for g in range(0, len(sensors), GROUP):
            group = sensors[g : g + GROUP]
            joules = loadmodel.power(group, ts) * MINUTE  # (S, T): each minute's energy
            counter = carry[g : g + len(group), None] + np.cumsum(joules, axis=1) - joules
            for s, values in zip(group, counter, strict=True):
                fh.write(series_lines(f'{ENERGY.name}{{{RAW_LABELS}sensor="{s.id}"}}', values, ts))
            carry[g : g + len(group)] += joules.sum(axis=1)
        fh.write(EOF_MARK)


def build_tsdb(tsdb: Path, n: int) -> dict:
    """The counter of n sensors at every minute instant of the window, as blocks in `tsdb`."""
    if tsdb.exists():
        shutil.rmtree(tsdb)
    work = tsdb.with_name(tsdb.name + ".work")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    sensors = bench_sensors(n)
    window = Window.ending(AT)
    carry = np.array([s.index_joules for s in sensors], dtype=np.int64)
    cuts = spans(window)
    samples = n * (window.minutes + 1)
    start = time.monotonic()

    lock = threading.Lock()

    def blocks(text: Path, span: tuple[int, int]) -> None:
        for b in promtool_blocks(text, text.with_suffix(".blocks"), BLOCK):
            os.rename(b, tsdb / b.name)
        text.unlink()
        with lock:
            bar.update(n * ((span[1] - span[0]) // MINUTE))

    tsdb.mkdir(parents=True)
    # promtool (2 at a time) runs while the next span is written; at most 3 texts on disk.
    with (
        cf.ThreadPoolExecutor(2) as pool,
        tqdm(total=samples, unit="sample", unit_scale=True, desc=f"build {n} sensors: blocks") as bar,
    ):
        running: list[cf.Future[None]] = []
        for i, span in enumerate(cuts):
            text = work / f"span-{i:02d}.om"
            span_text(text, sensors, carry, span)
            bar.set_postfix_str(f"{i + 1}/{len(cuts)} texts written")
            running.append(pool.submit(blocks, text, span))
            while len([f for f in running if not f.done()]) >= 2:
                cf.wait(running, return_when=cf.FIRST_COMPLETED)
        for f in running:
            f.result()
    shutil.rmtree(work)
    info = {
        "format": FORMAT,
        "sensors": n,
        "samples": samples,
        "blocks": len(cuts),
        "seconds": round(time.monotonic() - start, 1),
        "bytes": dir_bytes(tsdb),
    }
    (tsdb / "bench.json").write_text(json.dumps(info))
    return info


def cached_tsdb(cache: Path, n: int) -> tuple[Path, dict, bool]:
    """The TSDB for n sensors, built unless a complete one is cached; (dir, build info, built now)."""
    tsdb = cache / f"partner-job-{n}"
    try:
        info = json.loads((tsdb / "bench.json").read_text())
        if info["format"] == FORMAT and info["sensors"] == n:
            return tsdb, info, False
    except (OSError, ValueError, KeyError):
        pass
    return tsdb, build_tsdb(tsdb, n), True


@contextlib.contextmanager
def services(
    tsdb: Path, root: Path, pushgateway_flags: Sequence[str] = ()
) -> Iterator[tuple[Settings, dict[str, int]]]:
    """Prometheus on `tsdb`, the Pushgateway (the stack's, plus `pushgateway_flags`) and the
    reference partner, on free ports, until exit; with each one's pid."""
    prom = f"http://127.0.0.1:{free_port()}"
    env = {
        "PROMETHEUS_URL": prom,
        "HISTORY_URL": prom,
        "PUSHGATEWAY_URL": f"http://127.0.0.1:{free_port()}",
        "PARTNER_URL": f"http://127.0.0.1:{free_port()}",
        "HOMEWATT_DATA": str(root),
        "PARTNER_TOKEN": "bench",
    }
    os.environ.update(env)
    settings = Settings.from_env()
    config = root / "prometheus.yml"
    config.write_text("global: {scrape_interval: 1m}\n")
    prometheus = Service(
        name="prometheus",
        argv=[
            binary("prometheus"),
            f"--config.file={config}",
            f"--storage.tsdb.path={tsdb}",
            f"--storage.tsdb.retention.time={STANDALONE_RETENTION}",
            # min = max: no compaction of the benchmark's blocks while it measures
            f"--storage.tsdb.min-block-duration={BLOCK // HOUR}h",
            f"--storage.tsdb.max-block-duration={BLOCK // HOUR}h",
            f"--web.listen-address={prom.removeprefix('http://')}",
        ],
        listen=hostport(prom),
        ready=http_ok(f"{prom}/-/ready"),
        ready_timeout=300.0,
    )
    stack = Stack(settings)
    with Supervisor(root / "logs") as sup:
        pushgateway = stack.pushgateway()
        pushgateway = dataclasses.replace(pushgateway, argv=[*pushgateway.argv, *pushgateway_flags])
        running = (pushgateway, prometheus, stack.partner())
        for service in running:
            sup.run(service)
        yield settings, {s.name: s.process.pid for s in running if s.process is not None}


def job_child(n: int, knobs: dict[str, int | None]) -> None:
    """The measured process: the real job over n sensors; its figures as one JSON line on stdout."""
    settings = Settings.from_env()
    ids = [s.id for s in bench_sensors(n)]
    client = PartnerClient(settings.partner_url, "bench")
    stats = job.run(settings, ids, AT, client, progress=True, **knobs)  # type: ignore[arg-type]
    usage = resource.getrusage(resource.RUSAGE_SELF)
    doc = {
        f.name: getattr(stats, f.name)
        for f in dataclasses.fields(stats)
        if f.name not in ("lock", "problems")
    }
    doc["knobs"] = {
        "fetch_workers": knobs["fetch_workers"] or settings.partner_fetch_workers,
        "fetch_batch": knobs["fetch_batch"] or settings.partner_fetch_batch,
        "send_workers": knobs["send_workers"] or settings.partner_send_workers,
    }
    doc["line"] = stats.line(f"window ending {AT.isoformat()}")
    doc |= {
        "problems": stats.problems[:5],
        "maxrss_kb": usage.ru_maxrss,
        "cpu": usage.ru_utime + usage.ru_stime,
    }
    print(json.dumps(doc))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--sensors", type=int, default=len(load_fleet().sensors), help="N (default: the default fleet's)"
    )
    ap.add_argument(
        "--cache",
        type=Path,
        default=Path(tempfile.gettempdir()) / "homewatt-bench",
        help="where the TSDB of each N is kept between runs (default: %(default)s)",
    )
    for knob in ("fetch-workers", "fetch-batch", "send-workers"):
        ap.add_argument(f"--{knob}", type=int, help="as the job's option (default: its setting)")
    ap.add_argument(
        "--pushgateway-flag",
        action="append",
        default=[],
        metavar="FLAG",
        help="a flag added to the stack's Pushgateway, e.g. --pushgateway-flag=--push.disable-consistency-check "
        "(its push-time check costs each push time in proportion to the groups it holds)",
    )
    ap.add_argument("--job", action="store_true", help=argparse.SUPPRESS)  # the child that is measured
    args = ap.parse_args()
    knobs = {
        "fetch_workers": args.fetch_workers,
        "fetch_batch": args.fetch_batch,
        "send_workers": args.send_workers,
    }
    if args.job:
        job_child(args.sensors, knobs)
        return
    n = args.sensors
    tsdb, info, built = cached_tsdb(args.cache, n)
    what = "built" if built else f"cached (built in {info['seconds']:.0f} s)"
    print(
        f"TSDB {what}: {tsdb}, {info['samples']:,} samples ({n} sensors x 43,201 minute instants), "
        f"{info['blocks']} blocks, {info['bytes'] / 1e6:.0f} MB ({info['bytes'] / info['samples']:.2f} bytes/sample)"
    )
    root = Path(tempfile.mkdtemp(prefix="homewatt-partner-bench-"))
    try:
        with services(tsdb, root, args.pushgateway_flag) as (settings, procs):
            before = {name: cpu_seconds(pid) for name, pid in procs.items()}
            argv = [sys.executable, __file__, "--job", "--sensors", str(n)]
            for knob, value in knobs.items():
                if value is not None:
                    argv += [f"--{knob.replace('_', '-')}", str(value)]
            child = subprocess.run(argv, stdout=subprocess.PIPE, text=True, check=True)
            cpu = {name: cpu_seconds(pid) - before[name] for name, pid in procs.items()}
        got = json.loads(child.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.pushgateway_flag:
        print(f"Pushgateway flags added: {' '.join(args.pushgateway_flag)}")
    report(n, got, cpu)


def report(n: int, got: dict, cpu: dict[str, float]) -> None:
    secs = got["seconds"]
    window = Window.ending(AT)
    print(
        f"window {window.start.isoformat()} .. {window.end.isoformat()}: {window.minutes} minutes per sensor"
    )
    print(
        f"sensors: {n:,}; {got['sensors']:,} read, {got['delivered']:,} delivered, "
        f"{got['failed']} failed, {got['rejected']} rejected, {got['retried']} retried"
    )
    k = got["knobs"]
    print(
        f"job: {k['fetch_workers']} readers x {k['fetch_batch']} sensors per range request, "
        f"{k['send_workers']} senders"
    )
    print(f"wall time: {secs:.1f} s ({secs / 60:.1f} min); all read after {got['fetch_seconds']:.1f} s")
    print(
        f"per sensor: fetch {got['fetch_seconds'] / n:.3f} s (stage wall; {got['fetch_busy'] / n:.3f} s "
        f"in a reader), send {got['send_busy'] / n:.3f} s in a sender, "
        f"total {secs / n:.3f} s (goal <= {GOAL} s): {'met' if secs / n <= GOAL else 'NOT met'}"
    )
    print(
        f"peak RSS of the job: {got['maxrss_kb'] / 1024:.0f} MB; "
        f"sent {got['bytes'] / 1e6:.0f} MB of JSON, {got['gzip_bytes'] / 1e6:.0f} MB gzipped "
        f"({got['bytes'] / n / 1e3:.0f} kB / {got['gzip_bytes'] / n / 1e3:.0f} kB per sensor)"
    )
    cpu = {"job": got["cpu"], **cpu}
    print(
        "CPU seconds per sensor: "
        + ", ".join(f"{name} {s / n:.3f}" for name, s in cpu.items())
        + f" (sum {sum(cpu.values()) / n:.3f}; {os.cpu_count()} cores)"
    )
    # The machine may be shared: the wall time is only comparable at a comparable load.
    print("load average at the end (1, 5, 15 min): " + ", ".join(f"{x:.1f}" for x in os.getloadavg()))
    print(f"the job's summary: {got['line']}")
    for p in got["problems"]:
        print(f"  {p}")


if __name__ == "__main__":
    main()
