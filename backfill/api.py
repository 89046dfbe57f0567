"""The backfill's typed entry point: `backfill(Options(...))`, as `make up` and the CLI call it."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from backfill.ingest import Target
from backfill.plan import Plan, make_plan
from backfill.run import BackfillError, Summary, run, wait_for_history
from homewatt import promapi, streams
from homewatt.config import HISTORY_DAYS, RAW_DAYS, REPO
from homewatt.contract import ENERGY, EXPORTER_JOB, SENSOR, STREAMS
from homewatt.fleet import load_fleet
from homewatt.meter import Ledger, counter
from homewatt.procs import die_with_parent

CounterAt = Callable[[str, int], float]  # a sensor's energy counter at a second


def first_metered_second(samples: list[tuple[float, float, str]], counter_at: CounterAt | None) -> int:
    """The second the earliest of `samples` (timestamp, counter, sensor) was metered in.

    Prometheus stamps a scrape when it starts; the exporter answers with the second
    it is in when it renders, which for a scrape started near a second's end is the
    next one.  The counter tells which: it grows every second.  The backfill ends
    just before that second, so the join has no gap and no overlap.
    """
    ts, joules, sensor = min(samples)
    second = int(ts)
    if counter_at is not None and counter_at(sensor, second + 1) == joules:
        return second + 1
    return second


def live_start_from_prometheus(url: str, counter_at: CounterAt | None = None, lookback_hours: int = 6) -> int:
    """The first second metered live, from the earliest exporter sample Prometheus holds."""
    now = time.time()
    result = promapi.query(url, f"{ENERGY.name}{{job='{EXPORTER_JOB}'}}[{lookback_hours}h]", at=now)
    samples = [
        (float(r["values"][0][0]), float(r["values"][0][1]), r["metric"].get(SENSOR, ""))
        for r in result
        if r["values"]
    ]
    if not samples:
        raise BackfillError(f"no live samples in Prometheus at {url} yet: start the stack, or pass --end")
    if min(samples)[0] < now - lookback_hours * 3600 + 120:
        raise BackfillError(
            f"Prometheus holds live data older than {lookback_hours} h, so where it starts is unknown: "
            "pass --end with the first live second"
        )
    return first_metered_second(samples, counter_at)


@dataclass(frozen=True)
class Options:
    """Everything one backfill run needs; `python -m backfill --help` explains each."""

    data: Path
    fleet: str | None = None
    end: int | None = None  # first live second; None: remembered, else asked of Prometheus
    prometheus_url: str = "http://127.0.0.1:9090"
    pushgateway_url: str | None = None  # where the progress goes (backfill/report.py); None: nowhere
    raw_days: float = RAW_DAYS
    history_days: float = HISTORY_DAYS
    bucket_dir: Path | None = None
    objstore_config: Path = REPO / "thanos" / "objstore.filesystem.yml"
    upload: bool = False
    thanos: str = "thanos"  # the binary the upload runs
    wait_url: str | None = None
    wait_timeout: float = 600.0
    prometheus_config: Path = streams.DEFAULT_CONFIG
    workers: int = 2
    progress: bool = True


def upload_commands(
    target: Target, objstore_config: Path, labels: dict[str, dict[str, str]], thanos: str = "thanos"
) -> list[list[str]]:
    return [
        [
            thanos,
            "tools",
            "bucket",
            "upload-blocks",
            f"--objstore.config-file={objstore_config}",
            f"--path={target.dir(stream)}",
            *streams.label_flags(labels[stream]),
        ]
        for stream in STREAMS
    ]


def upload(commands: list[list[str]]) -> None:
    for cmd in commands:
        if shutil.which(cmd[0]) is None:
            raise BackfillError(
                f"the upload needs the thanos binary ({cmd[0]} not found; `make up` builds bin/thanos, the "
                "homewatt Docker image has it); the blocks are written: run the printed commands"
            )
        proc = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=die_with_parent)
        if proc.returncode != 0:
            raise BackfillError(f"{shlex.join(cmd)} failed: {proc.stderr.strip()[-2000:]}")


def backfill(opts: Options) -> Summary:
    """Write (or finish writing) the history, then upload and wait as the options say."""
    data = opts.data.resolve()
    fleet = load_fleet(opts.fleet)
    labels = {s: streams.stream_labels(s, opts.prometheus_config) for s in STREAMS}
    if opts.upload and not opts.bucket_dir:
        raise BackfillError("--upload goes with --bucket-dir")
    if opts.bucket_dir:
        target = Target(opts.bucket_dir.resolve(), per_stream=True)
        work = target.root / ".backfill"
    else:
        target = Target(data / "prometheus")
        work = data / "backfill"
    state = work / "state.json"
    end = opts.end
    if end is None and state.exists():
        end = json.loads(state.read_text()).get("identity", {}).get("live_start")
    sensors = fleet.modelled  # a real device's history starts when it first reports: none is invented
    ledger = Ledger(sensors, data / "ledger")
    if end is None:
        index = {s.id: i for i, s in enumerate(sensors)}

        def counter_at(sensor: str, second: int) -> float:
            return float(counter(ledger, [second])[index[sensor], 0]) if sensor in index else -1.0

        end = live_start_from_prometheus(opts.prometheus_url, counter_at)
    plan: Plan = make_plan(end, opts.raw_days, opts.history_days, len(sensors))
    summary = run(
        sensors,
        plan,
        target,
        work,
        ledger,
        opts.raw_days,
        opts.history_days,
        workers=opts.workers,
        progress=opts.progress,
        labels=labels,
        pushgateway_url=opts.pushgateway_url,
    )
    if target.per_stream:
        for d in target.dirs():  # upload-blocks wants them, even emptied by hand after an upload
            d.mkdir(parents=True, exist_ok=True)
        summary.upload = upload_commands(target, opts.objstore_config, labels, opts.thanos)
        if opts.upload:
            upload(summary.upload)
    if opts.wait_url:
        wait_for_history(opts.wait_url, plan, len(sensors), opts.wait_timeout)
    return summary
