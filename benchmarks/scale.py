"""What N sensors cost one 2-core machine: the exporter, Prometheus, its rules, the History
dashboard, the nightly job and the backfill, for N = 100, 1,000 and 10,000 (issue 14).

For each N:

1. A generated fleet (benchmarks/_fleets.big_fleet: the default synthetic homes in turn, a seed
   per id, all modelled) is written as a fleet file into a scratch data directory, anchored
   today (the exporter's first start sums today's seconds since 00:00 UTC).
2. The real exporter and the real Prometheus start as `make up` starts them (stack/services.py:
   its flags, 2 h blocks, 3 days' retention, the project's prometheus.yml on free ports, the
   rule files Prometheus runs there: the 1m group and the alerts), plus a copy of the 15m group
   evaluated every `--every-15m` (default 1m, to time it in a short run; in `make up` the
   Thanos Ruler evaluates it every 15 min).  Prometheus scrapes the exporter every second for
   `--minutes` after a warm-up.
3. Measured over the run:
   - the scrape: Prometheus's own `scrape_duration_seconds` of the exporter (median, p99, max)
     and the exporter's `homewatt_exporter_render_seconds`; the exporter's CPU s/s (/proc);
   - Prometheus: CPU s/s and RSS (/proc), samples appended/s, WAL bytes written (the wal/
     directory's growth) per sensor-day at 1 s, the run scaled to a day;
   - block bytes/sample: the head written as a block by the snapshot API (`make up` sets
     `--web.enable-admin-api`), and the same with its index spread over a 2 h block's 7,200
     samples per series (what Prometheus cuts and the sidecar uploads); the snapshot's CPU per
     sample prices a head compaction;
   - every rule group's evaluation time (prometheus_rule_group_last_duration_seconds, each
     evaluation polled from Prometheus's /metrics) with the seconds of data its window held;
   - one History dashboard load for one sensor (grafana/dashboards/history.json, every query
     as Grafana sends it, tests/grafana_emulation.py): the sum of the queries' server time
     (`execTotalTime`, `stats=all`), median of `--history-loads`.
4. Then the run's TSDB is served again by a Prometheus with no scrapes and no rules: each timed
   group (1m, 15m, homewatt-live) is evaluated as instant queries at instants whose window held
   2, 5, 15, 30 and 60 minutes of data (those the run has), and its CPU seconds per evaluation
   read from /proc; the History load is timed again there.  Those prices split Prometheus's CPU
   into ingest (the run's CPU less its evaluations of these groups) and the rules at full
   windows and make up's intervals ("steady" = ingest + rules + a head compaction).
5. The nightly job's seconds per sensor and the backfill's samples/s and bytes/sample come from
   benchmarks/partner_job_rate.py and benchmarks/backfill_rate.py, run as subprocesses when
   they take `--sensors` (and `--days`); otherwise those columns say which script to run.

It prints one table, the shard capacity derived from it (linear fits in N over each N's
longest run), disk per sensor-year per storage tier, and writes every raw figure as JSON
(`--json`, by default scale.json in the scratch directory).  `--live-from` reads earlier
results back, to add runs or the scripts' figures and print the report again.

    python benchmarks/scale.py [--sensors 100,1000,10000] [--minutes 5] [--scratch DIR] [--keep]
    python benchmarks/scale.py --sensors 10000 --minutes 65 --every-15m 15m   # full 1 h windows
    python benchmarks/scale.py --sensors '' --live-from a.json --live-from b.json
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import glob
import hashlib
import itertools
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import requests
import yaml
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import _fleets  # noqa: E402
from benchmarks._proc import cpu_seconds  # noqa: E402
from benchmarks.history_speed import timed  # noqa: E402
from homewatt import promapi  # noqa: E402
from homewatt.config import REPO, Settings  # noqa: E402
from homewatt.fleet import Sensor, load_fleet  # noqa: E402
from homewatt.procs import wait_until  # noqa: E402
from stack.services import Stack  # noqa: E402
from stack.supervisor import Service, Supervisor  # noqa: E402
from tests import grafana_emulation as ge  # noqa: E402
from tests.conftest import stack_env, thanos_env  # noqa: E402

BENCH = Path(__file__).resolve().parent
HISTORY_DASHBOARD = REPO / "grafana" / "dashboards" / "history.json"
RULES_15M = REPO / "rules" / "homewatt-15m.rules.yml"
CORES = 2.0
CPU_BUDGET = 1.5  # cores for the exporter + Prometheus on a 2-core machine (the rest: OS, Thanos sidecar)
SCRAPE_LIMIT_S = 1.0  # the scrape interval, and prometheus.yml's scrape_timeout
BLOCK_SAMPLES = 7_200  # samples per 1 s series in a 2 h block
DAY = 86_400
YEAR = 365 * DAY
# One sensor-year in the raw tier: power and counter at 1 s, avg1m and increase1m (thanos_tiers.TIERS).
RAW_SAMPLES_PER_YEAR = 2 * YEAR + 2 * YEAR // 60
# docs/figures.md "Thanos tiers" (benchmarks/thanos_tiers.py on real Thanos v0.42.4 blocks): MB per
# sensor-year and days kept of the tiers this benchmark does not write.
THANOS_TIERS = [
    ("raw 1 s + 1m series, bucket (compacted 14-day blocks)", 145.0, 100),
    ("5m downsampled, bucket", 7.6, 3 * 365),
    ("1h downsampled, bucket", 0.70, 3 * 365),
    ("quarter stream: 15m series + readings, bucket", 0.54, 3 * 365),
]
# docs/figures.md "The History dashboard's speed": one sensor, 90 days at 1 s + 3 years of quarter-hours.
HISTORY_FULL_MS = {"Thanos Query": 43.0, "Prometheus": 52.5}
PARTNER_SCRIPT = BENCH / "partner_job_rate.py"
BACKFILL_SCRIPT = BENCH / "backfill_rate.py"
# Rule groups timed, and the seconds of data their window reads (homewatt-live's silent_seconds
# reads an hour of the 15 s sensor:elec_power_watts:timestamp; before session 7 a [1h:1m] subquery of the 1 s data).
GROUPS = {"homewatt-1m": 60, "homewatt-15m": 900, "homewatt-live": 3600}
MAKE_UP_INTERVAL = {"homewatt-1m": 60, "homewatt-15m": 900, "homewatt-live": 15}
OFFLINE_FILLS_MIN = (2, 5, 15, 30, 60)


# --- the fleet -------------------------------------------------------------------------


def fleet_sensors(n: int, index_date: dt.date) -> tuple[Sensor, ...]:
    """N sensors of the load model: big_fleet's, with device entries turned into modelled homes."""
    return tuple(dataclasses.replace(s, device=None) for s in _fleets.big_fleet(n, index_date))


def write_fleet(path: Path, sensors: Sequence[Sensor]) -> Path:
    """The sensors in the fleet file format homewatt/fleet.py loads (benchmarks/_fleets.py's writer
    when it has one), checked by loading it back."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = getattr(_fleets, "write_fleet", None)
    if writer is not None:
        return Path(writer(path, tuple(sensors)))
    entries = []
    for s in sensors:
        raw = dataclasses.asdict(s)
        raw.pop("timezone")  # set once, at the top
        raw["index_date"] = s.index_date.isoformat()
        if s.replay is not None:
            raw["replay"] = {"dataset": s.replay.dataset, "start": s.replay.start.isoformat()}
        entries.append({k: v for k, v in raw.items() if v is not None})
    path.write_text(yaml.safe_dump({"timezone": sensors[0].timezone, "sensors": entries}, sort_keys=False))
    if load_fleet(path).sensors != tuple(sensors):
        raise RuntimeError(f"{path} does not load back as the generated fleet")
    return path


# --- reading processes and Prometheus ---------------------------------------------------


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def scrape_metrics(url: str) -> list[tuple[str, dict[str, str], float]]:
    """A /metrics page as (name, labels, value) rows."""
    out = []
    for line in requests.get(f"{url}/metrics", timeout=10).text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        name, _, labels = head.partition("{")
        out.append((name, dict(LABEL.findall(labels)), float(value)))
    return out


def total(rows: list[tuple[str, dict[str, str], float]], name: str) -> float:
    return sum(v for n, _, v in rows if n == name)


def instant(url: str, expr: str, at: float) -> float | None:
    result = promapi.query(url, expr, at=at)
    return float(result[0]["value"][1]) if result else None


class RuleEvaluations:
    """Every evaluation of every rule group, read from Prometheus's /metrics: {group: {ts: s}}."""

    def __init__(self) -> None:
        self.seen: dict[str, dict[float, float]] = {}

    def poll(self, rows: list[tuple[str, dict[str, str], float]]) -> None:
        last: dict[str, float] = {}
        took: dict[str, float] = {}
        for name, labels, value in rows:
            group = labels.get("rule_group", "").rpartition(";")[2]
            if name == "prometheus_rule_group_last_evaluation_timestamp_seconds":
                last[group] = value
            elif name == "prometheus_rule_group_last_duration_seconds":
                took[group] = value
        for group, ts in last.items():
            if ts > 0 and group in took:
                self.seen.setdefault(group, {})[ts] = took[group]


# --- one live run ------------------------------------------------------------------------


def add_15m_group(config: Path, every: str, alerts: bool = True) -> None:
    """Prometheus's config as the stack wrote it, with a copy of the 15m group evaluated `every`
    added to its rule files (in `make up` the Thanos Ruler evaluates it every 15 min); without
    the alert rule files when not `alerts` (to see what ingest costs alone)."""
    doc = yaml.safe_load(RULES_15M.read_text())
    for group in doc["groups"]:
        group["interval"] = every
    copy = config.with_name(f"homewatt-15m-every-{every}.rules.yml")
    copy.write_text(
        f"# benchmarks/scale.py: rules/homewatt-15m.rules.yml evaluated every {every}.\n"
        + yaml.safe_dump(doc, sort_keys=False)
    )
    prom = yaml.safe_load(config.read_text())
    kept = [f for f in prom.get("rule_files") or [] if alerts or "alerts" not in Path(f).name]
    prom["rule_files"] = [*kept, str(copy)]
    config.write_text(
        "# Written by stack/services.py; benchmarks/scale.py added the 15m group's copy.\n"
        + yaml.safe_dump(prom, sort_keys=False)
    )


def snapshot_blocks(url: str, tsdb: Path) -> dict[str, float]:
    """The head written as a block (the snapshot API): samples, series, bytes of chunks and index."""
    r = requests.post(f"{url}/api/v1/admin/tsdb/snapshot", params={"skip_head": "false"}, timeout=600)
    r.raise_for_status()
    snap = tsdb / "snapshots" / r.json()["data"]["name"]
    out = {"samples": 0.0, "series": 0.0, "chunks": 0.0, "index": 0.0, "span_s": 0.0, "blocks": 0.0}
    for meta_path in snap.glob("*/meta.json"):
        meta = json.loads(meta_path.read_text())
        block = meta_path.parent
        out["blocks"] += 1
        out["samples"] += meta["stats"]["numSamples"]
        out["series"] += meta["stats"]["numSeries"]
        out["span_s"] = max(out["span_s"], (meta["maxTime"] - meta["minTime"]) / 1000)
        out["chunks"] += dir_bytes(block / "chunks")
        out["index"] += (block / "index").stat().st_size
    shutil.rmtree(snap, ignore_errors=True)
    if out["samples"]:
        out["bytes_per_sample"] = (out["chunks"] + out["index"]) / out["samples"]
        out["chunk_bytes_per_sample"] = out["chunks"] / out["samples"]
        # The same series over a 2 h block: chunks grow with samples, the index with series only.
        per_series = out["samples"] / out["series"]
        out["bytes_per_sample_2h"] = out["chunk_bytes_per_sample"] + out["index"] / out["series"] / max(
            per_series, BLOCK_SAMPLES
        )
    return out


def history_load(url: str, sensor: str, loads: int) -> dict[str, Any]:
    """One sensor's History dashboard (all its queries in sequence) on this Prometheus: the
    median over `loads` of the summed server time (execTotalTime) and round trip, in ms, and
    the slowest panels."""
    dashboard = json.loads(HISTORY_DASHBOARD.read_text())
    qs = ge.queries(dashboard, dt.datetime.now(dt.UTC), sensor)
    server, trip = [], []
    per_query: list[list[float]] = [[] for _ in qs]
    with requests.Session() as session:
        for i in range(loads + 1):  # the first load warms caches, not counted
            times = [timed(session, url, q, None)[:2] for q in qs]
            if i:
                server.append(sum(s for s, _ in times))
                trip.append(sum(t for _, t in times))
                for j, (s, _) in enumerate(times):
                    per_query[j].append(s)
    medians = sorted(
        ((statistics.median(x), q.panel) for x, q in zip(per_query, qs, strict=True)), reverse=True
    )
    return {
        "queries": len(qs),
        "server_ms": statistics.median(server),
        "round_trip_ms": statistics.median(trip),
        "loads": loads,
        "slowest": medians[:3],
    }


def group_exprs(config: Path) -> dict[str, list[str]]:
    """Every rule group's expressions (recording rules and alerts) in a Prometheus config's rule files."""
    out: dict[str, list[str]] = {}
    for pattern in yaml.safe_load(config.read_text()).get("rule_files") or []:
        for path in sorted(glob.glob(pattern)):
            for group in yaml.safe_load(Path(path).read_text())["groups"]:
                out[group["name"]] = [rule["expr"] for rule in group["rules"]]
    return out


def rule_costs(
    url: str, pid: int, exprs: dict[str, list[str]], first_scrape: float, last: float, repeats: int
) -> list[dict[str, Any]]:
    """CPU seconds of one evaluation of each timed group, on a Prometheus that does nothing else,
    evaluated at instants whose window held 2, 5, 15, 30, 60 minutes of data (those the run has)
    and the run's end."""
    fills = {f * 60.0 for f in OFFLINE_FILLS_MIN if f * 60 <= last - first_scrape}
    out = []
    for group in GROUPS:
        for fill in sorted(fills | {round(last - first_scrape)}):
            at = first_scrape + fill
            for e in exprs.get(group, []):  # once unmeasured: the head's chunks into the page cache
                promapi.query(url, e, at=at, timeout=900)
            c, w = cpu_seconds(pid), time.monotonic()
            for _ in range(repeats):
                for e in exprs.get(group, []):
                    promapi.query(url, e, at=at, timeout=900)
            out.append(
                {
                    "group": group,
                    "window_filled_s": fill,
                    "cpu_s": (cpu_seconds(pid) - c) / repeats,
                    "wall_s": (time.monotonic() - w) / repeats,
                }
            )
    return out


def offline(
    prometheus: Service, data: Path, first_scrape: float, last: float, sensor: str, args: argparse.Namespace
) -> dict[str, Any]:
    """The run's TSDB served again by a Prometheus without scrapes or rules: the timed groups'
    CPU per evaluation, and the History dashboard, free of the live load."""
    (config,) = [a.split("=", 1)[1] for a in prometheus.argv if a.startswith("--config.file=")]
    exprs = group_exprs(Path(config))
    quiet = Path(config).with_name("prometheus-offline.yml")
    quiet.write_text("# benchmarks/scale.py: no scrapes, no rules\nglobal: {scrape_interval: 1m}\n")
    service = dataclasses.replace(
        prometheus,
        name="prometheus-offline",
        # At 10,000 sensors one homewatt-live evaluation over a full hour outlasts the default 2 min.
        argv=[f"--config.file={quiet}" if a.startswith("--config.file=") else a for a in prometheus.argv]
        + ["--query.timeout=1h"],
        ready_timeout=1800.0,
        process=None,
    )
    url = f"http://{service.listen[0]}:{service.listen[1]}" if service.listen else ""
    with Supervisor(data / "logs") as sup:
        start = time.monotonic()
        sup.run(service)  # replays the WAL
        assert service.process
        out: dict[str, Any] = {"replay_s": time.monotonic() - start, "loadavg_start": os.getloadavg()}
        out["rule_costs"] = rule_costs(url, service.process.pid, exprs, first_scrape, last, args.rule_repeats)
        out["history"] = history_load(url, sensor, args.history_loads)
        out["loadavg_end"] = os.getloadavg()
    return out


def live_run(n: int, root: Path, args: argparse.Namespace) -> dict[str, Any]:
    data = root / "data"
    sensors = fleet_sensors(n, dt.datetime.now(dt.UTC).date())
    fleet_file = write_fleet(root / "fleet.yaml", sensors)
    env = thanos_env(stack_env(data, fleet_file))  # free ports for every target prometheus.yml names
    settings = Settings.from_env({**os.environ, **env})
    stack = Stack(settings)
    url = settings.prometheus_url
    out: dict[str, Any] = {
        "sensors": n,
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "minutes": args.minutes,
        "warmup_s": args.warmup,
        "loadavg_start": os.getloadavg(),
        "fleet": str(fleet_file),
        # The exporter is being reworked: which code served the scrapes.
        "exporter_source_sha256": hashlib.sha256(
            b"".join(f.read_bytes() for f in sorted((REPO / "exporter").glob("*.py")))
        ).hexdigest()[:16],
    }
    exporter = dataclasses.replace(stack.exporter(), ready_timeout=args.start_timeout)
    prometheus = stack.prometheus()  # make up's flags and config, plus the 15m group below
    (config,) = [a.split("=", 1)[1] for a in prometheus.argv if a.startswith("--config.file=")]
    add_15m_group(Path(config), args.every_15m, args.alerts)
    out["15m_interval"] = args.every_15m
    out["alerts"] = args.alerts
    out["prometheus_argv"] = list(prometheus.argv)
    with Supervisor(data / "logs") as sup:
        t = time.monotonic()
        print(f"  starting the exporter ({n:,} sensors: its first start sums today's seconds) ...")
        sup.run(exporter)
        out["exporter_start_s"] = time.monotonic() - t
        sup.run(prometheus)
        assert exporter.process and prometheus.process
        epid, ppid = exporter.process.pid, prometheus.process.pid
        wait_until(lambda: instant(url, 'up{job="homewatt-exporter"}', time.time()) == 1, 60, "first scrape")
        first_scrape = time.time()
        rules = RuleEvaluations()
        for _ in tqdm(range(args.warmup), desc=f"  {n:,} sensors, warm-up", unit="s", leave=False):
            time.sleep(1)
        rows = scrape_metrics(url)
        rules.poll(rows)
        t0, wal0 = time.time(), dir_bytes(stack.tsdb / "wal")
        cpu0 = {"exporter": cpu_seconds(epid, with_children=True), "prometheus": cpu_seconds(ppid)}
        appended0 = total(rows, "prometheus_tsdb_head_samples_appended_total")
        rss_max = {"exporter": 0, "prometheus": 0}
        trace = [(t0, cpu0["exporter"], cpu0["prometheus"])]  # every 5 s: (time, CPU s of each)
        seconds = int(args.minutes * 60)
        for i in tqdm(range(seconds), desc=f"  {n:,} sensors, live", unit="s"):
            time.sleep(max(0.0, t0 + i + 1 - time.time()))
            rss_max = {
                "exporter": max(rss_max["exporter"], rss_bytes(epid)),
                "prometheus": max(rss_max["prometheus"], rss_bytes(ppid)),
            }
            if i % 5 == 4:
                rules.poll(scrape_metrics(url))
                trace.append((time.time(), cpu_seconds(epid, with_children=True), cpu_seconds(ppid)))
        rows = scrape_metrics(url)
        rules.poll(rows)
        t1, wal1 = time.time(), dir_bytes(stack.tsdb / "wal")
        cpu1 = {"exporter": cpu_seconds(epid, with_children=True), "prometheus": cpu_seconds(ppid)}
        took = t1 - t0
        trace.append((t1, cpu1["exporter"], cpu1["prometheus"]))
        # The run's end, when the rules' windows are fullest: its last fifth, 5 min at most.
        tail = next(x for x in trace if x[0] >= t1 - min(300.0, took / 5))
        out["cpu_trace"] = [(round(t - first_scrape, 1), e, p) for t, e, p in trace]
        out["cpu_tail_s_per_s"] = {
            "exporter": (cpu1["exporter"] - tail[1]) / (t1 - tail[0]),
            "prometheus": (cpu1["prometheus"] - tail[2]) / (t1 - tail[0]),
            "seconds": t1 - tail[0],
            "from_window_filled_s": tail[0] - first_scrape,
        }
        appended = total(rows, "prometheus_tsdb_head_samples_appended_total") - appended0
        out["loadavg_end"] = os.getloadavg()
        out["run_s"] = took
        out["cpu_s_per_s"] = {k: (cpu1[k] - cpu0[k]) / took for k in cpu0}
        out["rss_bytes_end"] = {"exporter": rss_bytes(epid), "prometheus": rss_bytes(ppid)}
        out["rss_bytes_max"] = rss_max
        out["prometheus_heap_inuse_bytes"] = total(rows, "go_memstats_heap_inuse_bytes")
        out["head_series"] = total(rows, "prometheus_tsdb_head_series")
        out["samples_per_s"] = appended / took
        out["wal_bytes"] = wal1 - wal0
        out["wal_bytes_per_sample"] = (wal1 - wal0) / appended if appended else None
        out["wal_bytes_per_sensor_day"] = (wal1 - wal0) / n / took * DAY
        window = f"[{int(took)}s]"
        job = '{job="homewatt-exporter"}'
        out["scrape_s"] = {
            name: instant(url, expr, t1)
            for name, expr in {
                "p50": f"quantile_over_time(0.5, scrape_duration_seconds{job}{window})",
                "p99": f"quantile_over_time(0.99, scrape_duration_seconds{job}{window})",
                "max": f"max_over_time(scrape_duration_seconds{job}{window})",
                "render_p50": f"quantile_over_time(0.5, homewatt_exporter_render_seconds{job}{window})",
                "render_p99": f"quantile_over_time(0.99, homewatt_exporter_render_seconds{job}{window})",
                "up_ratio": f"avg_over_time(up{job}{window})",
                "scrapes": f"count_over_time(up{job}{window})",
                "samples_per_scrape": f"max_over_time(scrape_samples_scraped{job}{window})",
            }.items()
        }
        # Scrape timestamps 1,000 ms apart compress to almost nothing; Prometheus aligns them when
        # within 2 ms.  How often the last 5 min's were not, and by how much.
        stamps = [float(t) for t, _ in promapi.query(url, f"up{job}[300s]", at=t1)[0]["values"]]
        deltas = [round((b - a) * 1000) - 1000 for a, b in itertools.pairwise(stamps)]
        out["scrape_timestamps"] = {
            "deltas": len(deltas),
            "not_1000_ms": sum(1 for d in deltas if d) / max(len(deltas), 1),
            "mean_abs_ms": statistics.fmean(abs(d) for d in deltas) if deltas else None,
        }
        out["scrape_interval_p99_s"] = next(
            (
                v
                for name, labels, v in rows
                if name == "prometheus_target_interval_length_seconds"
                and labels.get("interval") == "1s"
                and labels.get("quantile") == "0.99"
            ),
            None,
        )
        out["rule_groups"] = {
            group: {
                "evaluations": [
                    {"at": ts, "window_filled_s": ts - first_scrape, "duration_s": d}
                    for ts, d in sorted(evals.items())
                ]
            }
            for group, evals in rules.seen.items()
        }
        sensor = next(s.id for s in sensors if s.replay is None)
        out["history"] = history_load(url, sensor, args.history_loads) | {"sensor": sensor}
        c, w = cpu_seconds(ppid), time.monotonic()
        out["snapshot"] = snapshot_blocks(url, stack.tsdb)
        # Writing the head as a block is what a head compaction does every 2 h: its CPU per sample.
        out["snapshot"] |= {"cpu_s": cpu_seconds(ppid) - c, "wall_s": time.monotonic() - w}
        out["tsdb_bytes"] = dir_bytes(stack.tsdb)
        out["missed_iterations"] = {
            labels.get("rule_group", "").rpartition(";")[2]: v
            for name, labels, v in scrape_metrics(url)
            if name == "prometheus_rule_group_iterations_missed_total"
        }
        last = time.time()
    if args.offline:
        print("  the same TSDB without scrapes or rules: rule groups' CPU per evaluation, History ...")
        try:
            out["offline"] = offline(prometheus, data, first_scrape, last, sensor, args)
        except Exception as exc:  # the live figures above are kept; the run's data too
            print(f"  the quiet TSDB's timing failed: {exc}")
            out["offline_error"] = str(exc)
            return out
    if not args.keep:
        shutil.rmtree(data, ignore_errors=True)
    return out


# --- the other benchmarks, when they take --sensors ----------------------------------------


def takes(script: Path, *options: str) -> bool:
    """Whether a benchmark's source declares these options (read, not run: a script without an
    argument parser would start its benchmark on `--help`)."""
    text = script.read_text() if script.exists() else ""
    return all(f'"{o}"' in text for o in options)


def run_script(script: Path, argv: list[str], timeout: float) -> tuple[str, float]:
    cmd = [sys.executable, str(script), *argv]
    print(f"  {shlex.join([Path(cmd[0]).name, *cmd[1:]])}")
    start = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    if p.returncode:
        raise RuntimeError(f"{script.name} exited {p.returncode}: {p.stderr[-2000:]}")
    return p.stdout, time.monotonic() - start


def number(pattern: str, text: str) -> float | None:
    """The last match of `pattern`'s group in `text`, as a number."""
    found = re.findall(pattern, text)
    return float(found[-1].replace(",", "")) if found else None


def partner_job(n: int, args: argparse.Namespace) -> dict[str, Any]:
    if not takes(PARTNER_SCRIPT, "--sensors"):
        return {"see": "benchmarks/partner_job_rate.py", "why": "it takes no --sensors option here"}
    k = min(n, args.job_sensors_max)
    argv = ["--sensors", str(k)]
    if takes(PARTNER_SCRIPT, "--cache"):  # its data built in our scratch, not in a cache others use
        argv += ["--cache", str(args.scratch_dir / "partner-cache")]
    out, took = run_script(PARTNER_SCRIPT, argv, args.script_timeout)
    return {
        "sensors": k,
        "s_per_sensor": number(r"total ([\d.]+) s \(goal", out) or number(r"([\d.]+) s per sensor", out),
        "took_s": took,
        "stdout": out,
    }


def backfill(n: int, args: argparse.Namespace) -> dict[str, Any]:
    if not takes(BACKFILL_SCRIPT, "--sensors", "--days"):
        return {"see": "benchmarks/backfill_rate.py", "why": "it takes no --sensors/--days options here"}
    # About the same number of samples at every N, never less than one 2 h block per series.
    days = max(2 / 24, min(1.0, args.backfill_sensor_days / n))
    argv = ["--sensors", str(n), "--days", f"{days:.4f}"]
    if takes(BACKFILL_SCRIPT, "--history-days"):
        argv += ["--history-days", f"{args.backfill_history_days:g}"]
    out, took = run_script(BACKFILL_SCRIPT, argv, args.script_timeout)
    return {
        "days": days,
        "history_days": args.backfill_history_days,
        "samples_per_s": number(r"= ([\d,]+) samples/s", out),
        "bytes_per_sample": number(r"([\d.]+) bytes/sample", out),
        "took_s": took,
        "stdout": out,
    }


# --- the report ----------------------------------------------------------------------------


def fit(ns: Sequence[float], ys: Sequence[float | None]) -> tuple[float, float] | None:
    """Least-squares y = a + b N over the measured points."""
    pts = [(x, y) for x, y in zip(ns, ys, strict=True) if y is not None]
    if len(pts) < 2:
        return None
    mx = statistics.fmean(x for x, _ in pts)
    my = statistics.fmean(y for _, y in pts)
    b = sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)
    return my - b * mx, b


def reach(line: tuple[float, float] | None, limit: float) -> float | None:
    if line is None or line[1] <= 0:
        return None
    return (limit - line[0]) / line[1]


def fmt(v: float | None, spec: str, scale: float = 1.0) -> str:
    return "n/a" if v is None else format(v * scale, spec)


def group_ms(run: dict[str, Any], group: str) -> str:
    """A rule group's evaluation, ms: the median of those with a full window, else of the last
    three, with the minutes of data their window held ("1043@17/60m")."""
    window = GROUPS[group]
    evals = run["rule_groups"].get(group, {}).get("evaluations", [])
    if not evals:
        return "n/a"
    full = [e["duration_s"] for e in evals if e["window_filled_s"] >= window]
    if full:
        return f"{statistics.median(full) * 1000:.0f}"
    last = evals[-3:]
    filled = min(e["window_filled_s"] for e in last)
    return f"{statistics.median(e['duration_s'] for e in last) * 1000:.0f}@{filled / 60:.0f}/{window // 60}m"


def end_cpu(run: dict[str, Any]) -> float:
    """Prometheus's CPU s/s at the run's end (its last fifth, 5 min at most), when the rules'
    windows are fullest; the whole run's for results written before that was recorded."""
    return float(run.get("cpu_tail_s_per_s", run["cpu_s_per_s"])["prometheus"])


def compaction_cpu(run: dict[str, Any]) -> float:
    """A head compaction's CPU, amortised: the snapshot wrote the head as a block, as the 2 h
    compaction does, so its CPU per sample x samples appended per second."""
    snap = run["snapshot"]
    if "cpu_s" not in snap or not snap.get("samples"):
        return 0.0
    return float(snap["cpu_s"] / snap["samples"] * run["samples_per_s"])


def offline_points(run: dict[str, Any], group: str) -> list[tuple[float, float]]:
    """(seconds of data in the window, CPU s of one evaluation) on the quiet TSDB, by fill."""
    costs = run.get("offline", {}).get("rule_costs", [])
    return sorted((c["window_filled_s"], c["cpu_s"]) for c in costs if c["group"] == group)


def full_cost(run: dict[str, Any], group: str) -> tuple[float | None, bool]:
    """CPU s of one evaluation with a full window, and whether it was extrapolated (a run shorter
    than the window: the least-squares line through every point, read at the window, and never
    below the largest cost measured: one evaluation's CPU is noisy, and a line through two points
    once read a negative cost)."""
    pts, window = offline_points(run, group), GROUPS[group]
    full = [c for f, c in pts if f >= window]
    if full:
        return statistics.median(full), False
    if len(pts) < 2:
        return None, True
    line = fit([f for f, _ in pts], [c for _, c in pts])
    return (max(max(c for _, c in pts), line[0] + line[1] * window) if line else None), True


def cost_at(run: dict[str, Any], group: str, fill: float) -> float:
    """CPU s of one evaluation whose window held `fill` s of data: the quiet TSDB's points
    joined by straight lines, proportional below the first, flat from a full window on."""
    pts, window = offline_points(run, group), GROUPS[group]
    if not pts:
        return 0.0
    if fill >= window:
        return full_cost(run, group)[0] or pts[-1][1]
    if fill <= pts[0][0]:
        return pts[0][1] * max(fill, 0.0) / pts[0][0]
    for (f0, c0), (f1, c1) in itertools.pairwise(pts):
        if fill <= f1:
            return c0 + (c1 - c0) * (fill - f0) / (f1 - f0)
    return pts[-1][1]


def rules_cpu(run: dict[str, Any]) -> float | None:
    """The timed groups' CPU s/s as make up runs them at steady state: each group's full-window
    evaluation over its interval there (the 15m group every 15 min, homewatt-live every 15 s)."""
    if not run.get("offline"):
        return None
    return sum((full_cost(run, g)[0] or 0.0) / MAKE_UP_INTERVAL[g] for g in GROUPS)


def ingest_cpu(run: dict[str, Any]) -> float | None:
    """Prometheus's CPU s/s in the run less the timed groups' evaluations during it (each priced
    at its window's fill by the quiet TSDB's points): scraping, appending, the WAL, the other
    (small) alert groups, its own metrics."""
    cpu = run["cpu_s_per_s"]["prometheus"]
    if not run.get("offline") or any(run.get("missed_iterations", {}).get(g) for g in GROUPS):
        return None  # not priced, or Prometheus fell behind and skipped evaluations
    start, end = run["cpu_trace"][0][0], run["cpu_trace"][-1][0]
    spent = sum(
        cost_at(run, g, e["window_filled_s"])
        for g in GROUPS
        for e in run["rule_groups"].get(g, {}).get("evaluations", [])
        if start <= e["window_filled_s"] <= end
    )
    return float(cpu - spent / run["run_s"])


def history_ms(run: dict[str, Any]) -> str:
    live, quiet = run.get("history"), run.get("offline", {}).get("history")
    return (f"{live['server_ms']:.0f}" if live else "n/a") + (f"/{quiet['server_ms']:.0f}" if quiet else "")


def script_cell(fig: dict[str, Any], key: str, spec: str) -> str:
    return f"see {Path(fig['see']).name}" if "see" in fig else fmt(fig.get(key), spec)


def report(results: dict[str, Any]) -> None:
    runs = results["runs"]
    dates = sorted({r["date"] for r in runs})
    print(f"\nhomewatt at scale, {dates[0]} .. {dates[-1]}, {os.cpu_count()} cores")
    head = (
        f"{'sensors':>7} {'min':>3} | {'scrape p50/p99 ms':>17} {'exp. CPU':>8} | {'Prom CPU':>8} {'ingest':>6} {'rules':>6} "
        f"{'RSS MB':>6} {'samples/s':>9} {'WAL kB/sensor-day':>17} {'B/sample':>8} | {'1m ms':>5} {'15m ms':>6} {'live ms':>12} | "
        f"{'History ms':>10} | {'job s/sensor':>12} | {'backfill samples/s':>18} {'B/sample':>8} | {'load avg':>9}"
    )
    print(head)
    print("-" * len(head))
    for r in runs:
        s = r["scrape_s"]
        job, bf = (results["scripts"][str(r["sensors"])][k] for k in ("partner_job", "backfill"))
        print(
            f"{r['sensors']:>7,} {r['run_s'] / 60:>3.0f} | {fmt(s['p50'], '.1f', 1000):>8}/{fmt(s['p99'], '.1f', 1000):<8} "
            f"{r['cpu_s_per_s']['exporter']:>8.3f} | {r['cpu_s_per_s']['prometheus']:>8.3f} {fmt(ingest_cpu(r), '.3f'):>6} "
            f"{fmt(rules_cpu(r), '.3f'):>6} {r['rss_bytes_end']['prometheus'] / 1e6:>6.0f} {r['samples_per_s']:>9,.0f} "
            f"{r['wal_bytes_per_sensor_day'] / 1e3:>17.0f} {fmt(r['snapshot'].get('bytes_per_sample_2h'), '.2f'):>8} | "
            f"{group_ms(r, 'homewatt-1m'):>5} {group_ms(r, 'homewatt-15m'):>6} {group_ms(r, 'homewatt-live'):>12} | "
            f"{history_ms(r):>10} | {script_cell(job, 's_per_sensor', '.3f'):>12} | "
            f"{script_cell(bf, 'samples_per_s', ',.0f'):>18} {'' if 'see' in bf else fmt(bf.get('bytes_per_sample'), '.2f'):>8} | "
            f"{r['loadavg_start'][0]:.1f}->{r['loadavg_end'][0]:.1f}"
        )
    print(
        "  min: minutes measured, after a warm-up. scrape: Prometheus's scrape_duration_seconds of the exporter.\n"
        "  CPU: s/s from /proc over the run. ingest: Prometheus's less the evaluations of the three timed rule\n"
        "  groups, priced below (n/a: not priced, or Prometheus fell behind and skipped evaluations). rules:\n"
        "  those groups at full windows and make up's intervals, priced below. WAL: the wal/ directory's growth per sensor,\n"
        "  the run scaled to a day. B/sample: the head written as a block (snapshot API), its index spread over a\n"
        "  2 h block. Rules, ms: prometheus_rule_group_last_duration_seconds in the run (wall time), median of\n"
        "  the evaluations with a full window, else of the last three with the minutes of data their window\n"
        "  held (live: the 15 s alert group, whose silent_seconds reads an hour of the 15 s sensor:elec_power_watts:timestamp; before session 7 a [1h:1m] subquery of the 1 s data). History: one\n"
        "  sensor, server time (execTotalTime) of all 21 panels, in the live run / on the quiet TSDB.\n"
        "  Load average: 1 min, at start and end (2 cores, shared with other work)."
    )
    for r in runs:
        if r.get("15m_interval", "1m") != "15m":
            print(
                f"  {r['sensors']:,} sensors, {r['run_s'] / 60:.0f} min: the 15m group evaluated every "
                f"{r.get('15m_interval', '1m')} in the live run (in make up: every 15 min, by the Thanos Ruler)."
            )
    print(
        "\nRule groups on the run's TSDB served again without scrapes or rules: CPU ms of one evaluation, by\n"
        "minutes of data in the window (~ extrapolated to a full window); as make up: s/s at its intervals"
    )
    for r in runs:
        if not r.get("offline"):
            continue
        cells = []
        for g in GROUPS:
            pts = offline_points(r, g)
            full, extra = full_cost(r, g)
            curve = " ".join(f"{f / 60:.0f}m:{c * 1000:.0f}" for f, c in pts)
            cells.append(
                f"{g.removeprefix('homewatt-')} [{curve}] full {fmt(full, '.0f', 1000)}{'~' if extra else ''}"
            )
        print(
            f"  {r['sensors']:>6,} ({r['run_s'] / 60:.0f} min): {'; '.join(cells)}; as make up {fmt(rules_cpu(r), '.3f')} s/s"
        )

    d = results["derived"]
    print(
        "\nCPU s/s per N at steady state as make up runs it (2-core machine): the exporter (longest run), Prometheus's\n"
        "ingest, the timed rule groups at full windows and make up's intervals, a head compaction amortised"
    )
    print(
        f"  {'sensors':>7} {'exporter':>8} {'ingest':>7} {'1m':>6} {'15m':>6} {'live':>6} {'compact':>7} {'total':>6} "
        f"{'w/o live':>8}   ingest from"
    )
    for b in d["budget"]:
        print(
            f"  {b['sensors']:>7,} {b['exporter']:>8.3f} {fmt(b['ingest'], '.3f'):>7} "
            + " ".join(f"{fmt(b['rules'].get(g), '.3f'):>6}" for g in GROUPS)
            + f" {b['compaction']:>7.3f} {fmt(b['total'], '.3f'):>6} {fmt(b['without_live'], '.3f'):>8}   {b['ingest_from']}"
        )
    print("\nShard capacity (sensors per Prometheus at 1 s on this 2-core machine), linear fits y = a + b*N:")
    for line in d["capacity_lines"]:
        print(f"  {line}")
    print(f"  => capacity ~ {fmt(d['capacity'], ',.0f')} sensors (the smallest of the limits marked *)")
    print("\nDisk per sensor-year, per tier (MB; held = what one sensor occupies at steady state):")
    for row in d["tiers"]:
        print(
            f"  {row['tier']:<58} {row['mb_per_sensor_year']:>8.2f} MB/yr  kept {row['days']:>5} d  held {row['mb_held']:>7.2f} MB  ({row['source']})"
        )
    held = sum(r["mb_held"] for r in d["tiers"] if r["bucket"]) + d["prometheus_held_mb"]
    raw = next(r["mb_held"] for r in d["tiers"] if r["bucket"])
    alts = [r for r in d["tiers"] if r.get("alternative")]
    print(
        f"  {'all tiers, held per sensor':<58} {'':>14}  {'':>8}   {held:>7.2f} MB"
        + (
            f" (raw as scraped: {held - raw + alts[0]['mb_held']:.0f}-{held - raw + alts[-1]['mb_held']:.0f} MB)"
            if alts
            else ""
        )
    )
    print("\nGrowth with N (per sensor):")
    for r in runs:
        n = r["sensors"]
        print(
            f"  N={n:>6,} ({r['run_s'] / 60:.0f} min): exporter {r['cpu_s_per_s']['exporter'] / n * 1e6:6.1f} us CPU/s, "
            f"Prometheus {r['cpu_s_per_s']['prometheus'] / n * 1e6:6.1f} (ingest {fmt(ingest_cpu(r), '5.1f', 1e6 / n)}, "
            f"rules {fmt(rules_cpu(r), '6.1f', 1e6 / n)}) us CPU/s, RSS {r['rss_bytes_end']['prometheus'] / n / 1e3:6.1f} kB, "
            f"WAL {r['wal_bytes_per_sample'] or 0:.2f} B/sample"
        )
    reused = ", ".join(f"{k} {v:g} ms" for k, v in HISTORY_FULL_MS.items())
    print(
        f"  History over one sensor's full history (90 days at 1 s + 3 years of quarter-hours, 30-day range;\n"
        f"  docs/figures.md, benchmarks/history_speed.py): {reused} server time."
    )


def budget(all_runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per N, the steady-state CPU s/s from the runs that measured each part best: the exporter
    and the scrape from the longest run, ingest from a run without alerts (else one that kept
    up with its rules), the rule groups from the run whose quiet TSDB held the most data."""
    out = []
    for n in sorted({r["sensors"] for r in all_runs}):
        rs = [r for r in all_runs if r["sensors"] == n]
        longest = max(rs, key=lambda r: r["run_s"])
        ingests = sorted(
            ((r.get("alerts", True), v) for r in rs if (v := ingest_cpu(r)) is not None), key=lambda x: x[0]
        )
        priced = [r for r in rs if r.get("offline")]
        fullest = max(
            priced, key=lambda r: max(f for f, _ in offline_points(r, "homewatt-live")), default=None
        )
        costs = {g: full_cost(fullest, g) for g in GROUPS} if fullest else {}
        rules = {g: (c / MAKE_UP_INTERVAL[g] if c is not None else None) for g, (c, _) in costs.items()}
        ingest = ingests[0][1] if ingests else None
        exporter = longest["cpu_s_per_s"]["exporter"]
        compaction = max(compaction_cpu(r) for r in rs)
        parts = [ingest, *rules.values()] if len(rules) == len(GROUPS) else [None]
        known = [x for x in parts if x is not None]
        total = exporter + compaction + sum(known) if len(known) == len(parts) else None
        live = rules.get("homewatt-live")
        out.append(
            {
                "sensors": n,
                "exporter": exporter,
                "ingest": ingest,
                "ingest_from": (
                    "n/a"
                    if not ingests
                    else "a run without the alert rules"
                    if not ingests[0][0]
                    else "a run, less its priced rule evaluations"
                ),
                "rules": rules,
                "live_eval_s": costs.get("homewatt-live", (None, False))[0],
                "live_extrapolated": costs.get("homewatt-live", (None, False))[1],
                "compaction": compaction,
                "total": total,
                "without_live": total - live if total is not None and live is not None else None,
                "scrape_p99_s": longest["scrape_s"]["p99"],
                "rss_bytes": longest["rss_bytes_end"]["prometheus"],
                "longest_run_min": longest["run_s"] / 60,
            }
        )
    return out


def derive(all_runs: list[dict[str, Any]]) -> dict[str, Any]:
    rows = budget(all_runs)
    ns = [float(b["sensors"]) for b in rows]
    lines, limits = [], []
    for what, key, limit, unit, binding in (
        (f"exporter + Prometheus (steady) CPU reaches {CPU_BUDGET} cores", "total", CPU_BUDGET, "s/s", True),
        (
            f"the same without homewatt-live's evaluations reaches {CPU_BUDGET} cores",
            "without_live",
            CPU_BUDGET,
            "s/s",
            False,
        ),
        (
            "one homewatt-live evaluation (its rules in turn, one query at a time) reaches its 15 s interval",
            "live_eval_s",
            float(MAKE_UP_INTERVAL["homewatt-live"]),
            "CPU s",
            True,
        ),
        ("the exporter (one Python process) reaches 1 core", "exporter", 1.0, "s/s", True),
        (
            f"the scrape's p99 reaches the {SCRAPE_LIMIT_S:g} s interval (= scrape_timeout)",
            "scrape_p99_s",
            SCRAPE_LIMIT_S,
            "s",
            True,
        ),
    ):
        line = fit(ns, [b[key] for b in rows])
        at = reach(line, limit)
        if line is not None:
            lines.append(
                f"{'*' if binding else ' '} {what}: {line[0]:.4g} + {line[1]:.4g}*N {unit} = {limit:g} at "
                f"N = ({limit:g} - {line[0]:.4g}) / {line[1]:.4g} = {fmt(at, ',.0f')}"
            )
        if at is not None and binding:
            limits.append(at)
    rss = fit(ns, [b["rss_bytes"] for b in rows])
    if rss is not None:
        lines.append(
            f"  Prometheus RSS: {rss[0] / 1e6:.0f} MB + {rss[1] / 1e3:.1f} kB*N (not a limit on 24 GiB)"
        )
    longest: dict[int, dict[str, Any]] = {}
    for r in all_runs:
        if r["run_s"] > longest.get(r["sensors"], {"run_s": -1.0})["run_s"]:
            longest[r["sensors"]] = r
    runs = [longest[n] for n in sorted(longest)]
    big = runs[-1]
    bps = big["snapshot"].get("bytes_per_sample_2h")
    raw_mb = bps * RAW_SAMPLES_PER_YEAR / 1e6 if bps else None
    wal_day = big["wal_bytes_per_sensor_day"]
    tiers: list[dict[str, Any]] = []
    if raw_mb is not None:
        tiers.append(
            {
                "tier": "Prometheus local TSDB, 1 s + 1m (2 h blocks)",
                "mb_per_sensor_year": raw_mb,
                "days": 3,
                "mb_held": raw_mb * 3 / 365,
                "bucket": False,
                "source": f"measured {bps:.2f} B/sample at N={big['sensors']:,}",
            }
        )
    tiers.append(
        {
            "tier": "Prometheus WAL (written per year; holds about 3 h)",
            "mb_per_sensor_year": wal_day * 365 / 1e6,
            "days": 0.125,
            "mb_held": wal_day * 3 / 24 / 1e6,
            "bucket": False,
            "source": f"measured {big['wal_bytes_per_sample'] or 0:.2f} B/sample",
        }
    )
    for tier, mb, days in THANOS_TIERS:
        tiers.append(
            {
                "tier": tier,
                "mb_per_sensor_year": mb,
                "days": days,
                "mb_held": mb * days / 365,
                "bucket": True,
                "source": "docs/figures.md",
            }
        )
    # Scraped data compresses worse than the backfill's exact seconds (scrape timestamps jitter):
    # the raw tier again at the lowest and highest bytes/sample the live runs measured.
    measured = sorted(
        (r["snapshot"]["bytes_per_sample_2h"], r["sensors"])
        for r in runs
        if r["snapshot"].get("bytes_per_sample_2h")
    )
    for b, n in dict.fromkeys([measured[0], measured[-1]]) if measured else []:
        mb = b * RAW_SAMPLES_PER_YEAR / 1e6
        tiers.append(
            {
                "tier": f"  the same as scraped live, N={n:,}",
                "mb_per_sensor_year": mb,
                "days": 100,
                "mb_held": mb * 100 / 365,
                "bucket": False,
                "alternative": True,
                "source": f"measured {b:.2f} B/sample",
            }
        )
    alts = [t for t in tiers if t.get("alternative")]
    rest = [t for t in tiers if not t.get("alternative")]
    first = next(i for i, t in enumerate(rest) if t["bucket"])  # the raw bucket tier: its variants below it
    tiers = [*rest[: first + 1], *alts, *rest[first + 1 :]]
    return {
        "budget": rows,
        "capacity_lines": lines,
        "capacity": min(limits) if limits else None,
        "tiers": tiers,
        "prometheus_held_mb": sum(
            t["mb_held"] for t in tiers if not t["bucket"] and not t.get("alternative")
        ),
        "history_full_ms": HISTORY_FULL_MS,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--sensors", default="100,1000,10000", help="fleet sizes, comma-separated (default 100,1000,10000)"
    )
    ap.add_argument(
        "--minutes", type=float, default=5.0, help="minutes of each live run after the warm-up (default 5)"
    )
    ap.add_argument(
        "--warmup", type=int, default=30, help="seconds of scraping before measuring (default 30)"
    )
    ap.add_argument("--history-loads", type=int, default=3, help="timed History loads per N (default 3)")
    ap.add_argument(
        "--start-timeout", type=float, default=1800.0, help="seconds the exporter may take to start"
    )
    ap.add_argument(
        "--every-15m",
        default="1m",
        help="interval of the 15m group's copy (default 1m, to time it in a short run; 15m as in make up)",
    )
    ap.add_argument(
        "--no-offline",
        dest="offline",
        action="store_false",
        help="skip timing the rule groups on the run's TSDB without live load",
    )
    ap.add_argument(
        "--no-alerts",
        dest="alerts",
        action="store_false",
        help="leave the alert rule files out (1m and 15m groups only): Prometheus's ingest alone",
    )
    ap.add_argument(
        "--rule-repeats", type=int, default=3, help="evaluations timed per group and fill (default 3)"
    )
    ap.add_argument("--scratch", type=Path, help="scratch directory (default: a new temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep each run's data directory")
    ap.add_argument(
        "--json", type=Path, help="where to write the raw results (default: <scratch>/scale.json)"
    )
    ap.add_argument("--no-scripts", action="store_true", help="skip partner_job_rate.py and backfill_rate.py")
    ap.add_argument(
        "--job-sensors-max",
        type=int,
        default=1000,
        help="sensors for partner_job_rate.py at most (default 1000)",
    )
    ap.add_argument(
        "--backfill-sensor-days",
        type=float,
        default=100.0,
        help="backfill_rate.py's span: about this many sensor-days, 2 h to 1 day per sensor (default 100)",
    )
    ap.add_argument(
        "--backfill-history-days",
        type=float,
        default=0.0,
        help="backfill_rate.py's days of quarter-hours (default 0: the 1 s data only)",
    )
    ap.add_argument("--script-timeout", type=float, default=3600.0, help="seconds per benchmark subprocess")
    ap.add_argument(
        "--live-from",
        type=Path,
        action="append",
        default=[],
        help="add the runs (and script figures) of an earlier scale.json; repeatable. With --sensors '' "
        "nothing runs live: the scripts run (unless --no-scripts) and the report is printed again",
    )
    args = ap.parse_args()
    sizes = [int(x) for x in args.sensors.replace("_", "").split(",") if x.strip()]
    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="homewatt-scale-"))
    scratch.mkdir(parents=True, exist_ok=True)
    args.scratch_dir = scratch
    json_path = args.json or scratch / "scale.json"
    print(f"cd {shlex.quote(str(REPO))} && .venv/bin/python benchmarks/scale.py {shlex.join(sys.argv[1:])}")
    print(f"scratch: {scratch}; df: {shutil.disk_usage(scratch).free / 1e9:.0f} GB free")
    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cores": os.cpu_count(),
        "argv": sys.argv[1:],
        "runs": [],
        "scripts": {},
        "live_from": [str(p) for p in args.live_from],
    }
    for path in args.live_from:
        before = json.loads(path.read_text())
        for run in before["runs"]:
            run.setdefault("date", before["date"])
            results["runs"].append(run)
            if "partner_job" in run:  # written before the scripts' figures were kept per N
                before.setdefault("scripts", {}).setdefault(
                    str(run["sensors"]),
                    {"partner_job": run.pop("partner_job"), "backfill": run.pop("backfill")},
                )
        results["scripts"] |= before.get("scripts", {})
    started = time.monotonic()
    for n in sizes:
        print(f"\n{n:,} sensors, {args.minutes:g} min")
        run = live_run(n, scratch / f"n{n}-{int(time.time())}", args)
        s = run["scrape_s"]
        print(
            f"  scrape p50 {fmt(s['p50'], '.1f', 1000)} ms, p99 {fmt(s['p99'], '.1f', 1000)} ms; exporter "
            f"{run['cpu_s_per_s']['exporter']:.3f} CPU s/s, Prometheus {run['cpu_s_per_s']['prometheus']:.3f}; "
            f"{run['samples_per_s']:,.0f} samples/s; load {run['loadavg_start'][0]:.1f} -> {run['loadavg_end'][0]:.1f}"
        )
        results["runs"].append(run)
        json_path.write_text(json.dumps(results, indent=1, default=str))
    for n in sorted({r["sensors"] for r in results["runs"]}):
        if args.no_scripts:  # earlier figures stay
            results["scripts"].setdefault(
                str(n),
                {
                    "partner_job": {"see": "benchmarks/partner_job_rate.py", "why": "--no-scripts"},
                    "backfill": {"see": "benchmarks/backfill_rate.py", "why": "--no-scripts"},
                },
            )
        else:
            print(f"\n{n:,} sensors: the nightly job and the backfill")
            results["scripts"][str(n)] = {"partner_job": partner_job(n, args), "backfill": backfill(n, args)}
        json_path.write_text(json.dumps(results, indent=1, default=str))
    results["derived"] = derive(results["runs"])
    results["took_s"] = time.monotonic() - started
    json_path.write_text(json.dumps(results, indent=1, default=str))
    report(results)
    print(f"\nraw results: {json_path}; took {results['took_s'] / 60:.0f} min")


if __name__ == "__main__":
    main()
