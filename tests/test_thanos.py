"""The long-term tier on the real Thanos binary (bin/thanos, built by `make thanos`).

One bucket for the module, filled as `make up` fills it: a backfill uploaded with
`thanos tools bucket upload-blocks` (14 days at 1 s ending on a 14-day compaction
boundary, 40 days of quarter-hours before), then two more days of both streams
standing in for what the sidecar and the Ruler upload later.  The reference is a
standalone Prometheus holding the very same blocks.  The tests run in file order
and walk the bucket through its life: served as uploaded, compacted and
downsampled, then past its raw retention.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import signal
import subprocess
from collections import Counter as Tally
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from homewatt import promapi, ruleralign, streams
from homewatt.config import REPO, Settings
from homewatt.contract import DAY, QUARTER_STREAM, RAW_STREAM, READING15M, STREAM_LABEL
from homewatt.fleet import load_fleet
from homewatt.procs import free_port, wait_until
from homewatt.window import Window, last_fire_time
from partner_job import fetch, job
from stack.services import Stack
from stack.supervisor import Service, Supervisor
from stack.thanos import BINARY, Thanos, Timings

from . import bucket_setup
from . import grafana_emulation as ge
from .conftest import free_port_base, stack_env, thanos_env, write_fleet
from .test_grafana import dashboards

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not BINARY.exists(), reason="bin/thanos is built by `make thanos`"),
]

# What Grafana's History datasource sends (grafana/provisioning/datasources/homewatt.yaml).
GRAFANA = {"max_source_resolution": "auto", "dedup": "true", "partial_response": "false"}
FORTNIGHT = 14 * DAY  # Thanos's second compaction level: blocks are compacted within these windows
SENSOR = "s-002"
NOW = dt.datetime.now(dt.UTC)
# The last 14-day boundary at least 3 days ago: the backfill ends there, the "live" days follow.
BOUNDARY = (int(NOW.timestamp()) - 3 * DAY) // FORTNIGHT * FORTNIGHT
SPANS = [None, ("now-90d", "now"), ("now-3y", "now")]  # 30 days (the default), 90 days, 3 years


def metas(bucket: Path) -> list[dict[str, Any]]:
    """meta.json of every block in the bucket that is not marked for deletion."""
    return [
        json.loads((d / "meta.json").read_text())
        for d in sorted(bucket.iterdir())
        if (d / "meta.json").exists() and not (d / "deletion-mark.json").exists()
    ]


def resolutions(bucket: Path, stream: str) -> Tally[int]:
    return Tally(
        m["thanos"]["downsample"]["resolution"]
        for m in metas(bucket)
        if m["thanos"]["labels"][STREAM_LABEL] == stream
    )


def assert_no_overlap(bucket: Path) -> None:
    """No two blocks of a compaction group (labels + resolution) overlap: the compactor would halt."""
    groups: dict[tuple[str, int], list[tuple[int, int]]] = {}
    for m in metas(bucket):
        key = (json.dumps(m["thanos"]["labels"], sort_keys=True), m["thanos"]["downsample"]["resolution"])
        groups.setdefault(key, []).append((m["minTime"], m["maxTime"]))
    for key, ranges in groups.items():
        ranges.sort()
        for (_, end), (start, _) in zip(ranges, ranges[1:], strict=False):
            assert start >= end, f"overlapping blocks in {key}"


def metric(url: str, name: str) -> float:
    text = requests.get(f"{url}/metrics", timeout=5).text
    values = [
        float(line.split()[-1]) for line in text.splitlines() if line.split("{")[0].split(" ")[0] == name
    ]
    return sum(values)


def run_query(url: str, q: ge.Query, extra: dict[str, str] | None = None) -> list[dict[str, Any]]:
    if q.instant:
        return promapi.query(url, q.expr, at=q.end, extra=extra)
    return promapi.query_range(url, q.expr, q.start, q.end, q.step, extra=extra)


def series_values(result: list[dict[str, Any]]) -> dict[str, list[tuple[float, float]]]:
    out = {}
    for r in result:
        key = json.dumps(r["metric"], sort_keys=True)
        points = r["values"] if "values" in r else [r["value"]]
        out[key] = [(float(t), float(v)) for t, v in points]
    return out


def assert_panels_match(
    native: str,
    thanos: str,
    dashboard: str = "history",
    now: dt.datetime = NOW,
    sensor: str = SENSOR,
    spans: list[tuple[str, str] | None] | None = None,
) -> list[str]:
    """Every panel query of a dashboard, sent to Thanos Query as Grafana sends it, answers what
    the native Prometheus answers: energy exactly, mean power within 0.5 %."""
    compared = []
    for span in SPANS if spans is None else spans:
        for q in ge.queries(dashboards()[dashboard], now, sensor, span):
            want = series_values(run_query(native, q))
            got = series_values(run_query(thanos, q, GRAFANA))
            assert got.keys() == want.keys(), (q.panel, span)  # both empty where the data ends
            rel = 0.005 if "power" in q.panel.lower() else 1e-9
            for key, points in want.items():
                assert [t for t, _ in got[key]] == [t for t, _ in points], (q.panel, span, q.expr)
                assert [v for _, v in got[key]] == pytest.approx([v for _, v in points], rel=rel), (
                    q.panel,
                    span,
                    q.expr,
                )
            if want:
                compared.append(q.panel)
    return compared


def count_samples(url: str, expr: str, at: int, extra: dict[str, str] | None = None) -> int:
    """Samples of `expr` in the day before `at`, as the given endpoint counts them."""
    (r,) = promapi.query(url, f"count_over_time({expr}[1d])", at=at, extra=extra)
    return int(float(r["value"][1]))


@pytest.fixture(scope="module")
def tier(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("thanos")
    fleet_file = write_fleet(root / "fleet.yaml", ids=[SENSOR], index_date=NOW.date())
    data = root / "data"
    env = stack_env(data, fleet_file)
    env["HISTORY_URL"] = f"http://127.0.0.1:{free_port()}"
    env["HOMEWATT_THANOS_PORT_BASE"] = str(free_port_base(9))
    settings = Settings.from_env({**os.environ, **env})
    # Nothing waits, nothing expires until the retention test asks otherwise.
    thanos = Thanos(settings, timings=Timings(**bucket_setup.TEST_TIMINGS))
    objstore = thanos.objstore_config()
    boundary = dt.datetime.fromtimestamp(BOUNDARY, dt.UTC)
    parts: bucket_setup.Parts = {
        "backfill": (boundary, 14, 40),
        "later": (boundary + dt.timedelta(days=2), 2, 0),  # what the sidecar and Ruler would upload
    }
    bucket_setup.fill(root, data, fleet_file, parts, objstore)
    # The native reference: one Prometheus over a copy of every block.
    reference = root / "reference"
    bucket_setup.reference_tsdb(root, parts, reference / "prometheus")
    ref_settings = Settings.from_env({**os.environ, **stack_env(reference, fleet_file)})
    with Supervisor(data / "logs") as sup:
        sup.run(Stack(ref_settings).prometheus(standalone=True))
        sup.run(thanos.store())
        sup.run(thanos.query(endpoints=[thanos.addr("store-grpc")]))
        yield {
            "root": root,
            "settings": settings,
            "thanos": thanos,
            "sup": sup,
            "native": ref_settings.prometheus_url,
            "query": settings.history_url,
            "fleet": load_fleet(fleet_file),
            "objstore": objstore,
        }


def wait_store_synced(tier: dict[str, Any]) -> None:
    """Until the store gateway serves exactly the blocks the bucket holds."""
    thanos: Thanos = tier["thanos"]
    url = "http://" + thanos.addr("store-http")
    n = len(metas(thanos.bucket))
    wait_until(
        lambda: metric(url, "thanos_bucket_store_blocks_loaded") == n, 60, f"the store with {n} blocks"
    )


def compact_once(tier: dict[str, Any], stream: str, timings: Timings | None = None) -> Service:
    """Run one stream's compactor until it has finished an iteration, check it did not halt, stop it."""
    thanos: Thanos = tier["thanos"]
    if timings is not None:
        thanos = Thanos(thanos.settings, timings=timings)
    service = thanos.compactor(stream)
    sup: Supervisor = tier["sup"]
    sup.run(service)
    url = "http://" + thanos.addr(service.name.removeprefix("thanos-") + "-http")
    wait_until(lambda: metric(url, "thanos_compact_iterations_total") >= 1, 120, f"{service.name} iteration")
    assert metric(url, "thanos_compact_halted") == 0, f"{service.name} halted"
    sup.stop_one(service)
    wait_store_synced(tier)
    return service


def test_query_serves_the_uploaded_history_as_native_prometheus_does(tier):
    bucket = tier["thanos"].bucket
    assert set(resolutions(bucket, RAW_STREAM)) == {0} == set(resolutions(bucket, QUARTER_STREAM))
    assert_no_overlap(bucket)
    compared = assert_panels_match(tier["native"], tier["query"])
    assert {"Mean power (kW)", "Energy per day (kWh), each bar on its local day"} <= set(compared)


def test_the_partner_job_reads_the_same_payload_through_query(tier):
    """Byte for byte: the window ending at the last local midnight of the later days."""
    settings: Settings = tier["settings"]
    tz = tier["fleet"].timezone
    window = Window.ending(last_fire_time(dt.datetime.fromtimestamp(BOUNDARY + 2 * DAY, dt.UTC), tz), tz)
    bodies = []
    for url in (tier["native"], tier["query"]):
        values = fetch.minute_wh(fetch.counter_readings(url, SENSOR, window))
        bodies.append(json.dumps(job.payload(SENSOR, window, values)).encode())
    assert bodies[0] == bodies[1]
    assert sum(v is not None for v in json.loads(bodies[0])["values"]) > 14 * 1440  # the raw days are there
    assert settings.history_url == tier["query"]


def test_the_same_block_uploaded_twice_counts_once(tier):
    root, bucket = tier["root"], tier["thanos"].bucket
    before = {m["ulid"] for m in metas(bucket)}
    again = root / "again"  # the same blocks, without the record of their first upload
    shutil.copytree(root / "backfill" / RAW_STREAM, again, ignore=shutil.ignore_patterns("thanos*"))
    flags = streams.label_flags(streams.stream_labels(RAW_STREAM))
    cmd = [str(BINARY), "tools", "bucket", "upload-blocks", f"--objstore.config-file={tier['objstore']}"]
    subprocess.run([*cmd, f"--path={again}", *flags], check=True, capture_output=True)
    assert {m["ulid"] for m in metas(bucket)} == before  # skipped: the ULID is already there
    day = BOUNDARY - 3 * DAY
    assert count_samples(tier["query"], 'elec_power_watts{sensor="s-002"}', day, GRAFANA) == DAY


def test_a_store_gateway_restart_loses_nothing(tier):
    sup: Supervisor = tier["sup"]
    thanos: Thanos = tier["thanos"]
    expr, day = 'elec_power_watts{sensor="s-002"}', BOUNDARY - 3 * DAY
    before = count_samples(tier["query"], expr, day, GRAFANA)
    store = next(s for s in sup.services if s.name == "thanos-store")
    sup.stop_one(store)
    sup.run(thanos.store())
    wait_until(
        lambda: count_samples(tier["query"], expr, day, GRAFANA) == before,
        60,
        "Query sees the restarted store",
        errors=(promapi.PromError, ValueError),
    )


def test_compactor_killed_mid_run_then_restarted_downsamples_without_overlap(tier):
    """Kill the raw stream's compactor while it works on blocks, restart it: it finishes the
    job (5m and 1h blocks), leaves no overlap and does not halt; the quarter stream is
    compacted but never downsampled."""
    thanos: Thanos = tier["thanos"]
    bucket = thanos.bucket
    sup: Supervisor = tier["sup"]
    service = thanos.compactor(RAW_STREAM)
    sup.start(service)
    log = sup.log_dir / f"{service.name}.log"
    wait_until(lambda: "downloaded block" in log.read_text(), 120, "the compactor at work")
    assert service.process is not None
    service.process.send_signal(signal.SIGKILL)
    service.process.wait()
    sup.services.remove(service)
    compact_once(tier, RAW_STREAM)
    compact_once(tier, QUARTER_STREAM)
    raw = resolutions(bucket, RAW_STREAM)
    assert raw[300_000] >= 1 and raw[3_600_000] >= 1, raw
    assert set(resolutions(bucket, QUARTER_STREAM)) == {0}
    assert_no_overlap(bucket)
    # Nothing counted twice or lost: a backfilled day still has one sample a second.
    day = BOUNDARY - 3 * DAY
    assert count_samples(tier["query"], 'elec_power_watts{sensor="s-002"}', day, GRAFANA) == DAY


def test_downsampled_data_gives_the_native_numbers(tier):
    wait_store_synced(tier)
    compared = assert_panels_match(tier["native"], tier["query"])
    assert "Energy per week (kWh)" in compared


def test_a_downsampled_counter_is_not_a_reading(tier):
    """Why every total reads the quarter-hour readings: from 5m/1h blocks, the counter is
    an average over each window, not the meter's value; the readings stay exact."""
    at = BOUNDARY - 5 * DAY
    coarse = {"max_source_resolution": "1h", "dedup": "true", "partial_response": "false"}
    native = promapi.by_label(
        promapi.query(tier["native"], 'elec_energy_joules_total{sensor="s-002"}', at=at)
    )
    read = promapi.by_label(
        promapi.query(tier["query"], f"last_over_time({READING15M.name}[15m])", at=at, extra=coarse)
    )
    assert read[SENSOR] == native[SENSOR]
    got = promapi.query_range(
        tier["query"], 'elec_energy_joules_total{sensor="s-002"}', at - 7200, at, 3600, extra=coarse
    )
    want = promapi.query_range(
        tier["native"], 'elec_energy_joules_total{sensor="s-002"}', at - 7200, at, 3600
    )
    assert got and want
    assert [float(v) for _, v in got[0]["values"]] != [float(v) for _, v in want[0]["values"]]


def test_after_raw_retention_the_history_still_gives_the_native_numbers(tier):
    bucket = tier["thanos"].bucket
    # 40 h: the shortest raw retention Thanos accepts with downsampling on.
    expiring = Timings(**{**bucket_setup.TEST_TIMINGS, "raw_retention": "40h"})
    compact_once(tier, RAW_STREAM, expiring)
    raw = resolutions(bucket, RAW_STREAM)
    assert raw[0] == 0 and raw[300_000] >= 1, raw  # raw 1 s blocks gone, downsampled ones kept
    day = BOUNDARY - 3 * DAY
    assert not promapi.query(
        tier["query"], 'count_over_time(elec_power_watts{sensor="s-002"}[1d])', at=day, extra=GRAFANA
    ), "no 1 s data left for that day"
    # The period still answers from the 5m blocks ...
    five = {"max_source_resolution": "5m", "dedup": "true", "partial_response": "false"}
    got = promapi.query_range(
        tier["query"], 'elec_power_watts{sensor="s-002"}', day - DAY, day, 3600, extra=five
    )
    assert got and len(got[0]["values"]) == 25
    # ... and every History panel from the quarter stream, as before.
    assert_panels_match(tier["native"], tier["query"])


def listed_flags() -> dict[str, Any]:
    return dict(yaml.safe_load((REPO / "thanos" / "flags.yml").read_text())["components"])


@pytest.mark.parametrize("component", list(listed_flags()))
def test_every_listed_flag_exists_in_the_built_binary(component):
    listed = listed_flags()[component]
    out = subprocess.run([str(BINARY), *component.split(), "--help"], capture_output=True, text=True)
    help_text = out.stdout + out.stderr
    shown = set(re.findall(r"--(?:\[no-\])?([a-z0-9][a-z0-9.-]*)", help_text))
    missing = set(listed["flags"]) - set(listed.get("hidden", [])) - shown
    assert not missing, f"thanos {component} has no {missing}"


def test_make_up_uses_only_listed_flags(tmp_path):
    settings = Settings.from_env({**os.environ, "HOMEWATT_DATA": str(tmp_path)})
    listed = listed_flags()
    for service in Thanos(settings).services():
        component = service.argv[1]
        used = {a[2:].split("=")[0] for a in service.argv[2:]}
        assert used <= set(listed[component]["flags"]), (service.name, used - set(listed[component]["flags"]))


def test_the_go_module_pins_the_composes_thanos():
    gomod = (REPO / "thanos" / "build" / "go.mod").read_text()
    (version,) = re.findall(r"^\s*github.com/thanos-io/thanos (v[\d.]+)", gomod, re.M)
    assert yaml.safe_load((REPO / "thanos" / "flags.yml").read_text())["version"] == version
    assert f"quay.io/thanos/thanos:{version}" in (REPO / "docker-compose.yml").read_text()
    assert f"THANOS_IMAGE=quay.io/thanos/thanos:{version}" in (REPO / "Dockerfile").read_text()
    out = subprocess.run([str(BINARY), "--version"], capture_output=True, text=True)
    assert f"version {version.lstrip('v')}" in out.stdout + out.stderr


@pytest.mark.timeout(600)  # a block is cut once the head spans 1.5 block lengths, then shipped
def test_the_sidecar_uploads_live_blocks_and_the_ruler_writes_the_quarter_stream(tmp_path):
    """The live path into the bucket: Prometheus's blocks (1-minute ones here) through the
    sidecar into the raw stream, the 15m group (every minute here) through the Ruler into
    the quarter stream, and Query serving both with the Ruler's readings equal to the counter."""
    fleet_file = write_fleet(tmp_path / "fleet.yaml", ids=[SENSOR])
    env = thanos_env(stack_env(tmp_path / "data", fleet_file))
    settings = Settings.from_env({**os.environ, **env})
    rules = yaml.safe_load((REPO / "rules" / "homewatt-15m.rules.yml").read_text())
    for group in rules["groups"]:
        group["interval"] = "1m"
    fast_rules = tmp_path / "homewatt-15m-every-minute.rules.yml"
    fast_rules.write_text(yaml.safe_dump(rules))
    timings = Timings(store_sync="5s", block_duration="1m")
    thanos = Thanos(settings, timings=timings, rule_files=(fast_rules,))
    stack = Stack(settings)
    with Supervisor(settings.data / "logs") as sup:
        for service in (stack.exporter(), stack.prometheus(block="1m"), *thanos.services()[:4]):
            sup.run(service)

        def sources() -> set[tuple[str, str]]:
            return {
                (m["thanos"]["labels"][STREAM_LABEL], m["thanos"]["source"]) for m in metas(thanos.bucket)
            }

        wait_until(
            lambda: {(RAW_STREAM, "sidecar"), (QUARTER_STREAM, "ruler")} <= sources(),
            420,
            "a sidecar block in the raw stream and a Ruler block in the quarter stream",
            interval=5,
        )
        ruler_blocks = [m for m in metas(thanos.bucket) if m["thanos"]["source"] == "ruler"]
        assert all(m["thanos"]["labels"] == streams.stream_labels(QUARTER_STREAM) for m in ruler_blocks)
        # Each reading the Ruler made is the counter's latest sample when it evaluated (a
        # scrape stamped just before the evaluation may have been stored just after it,
        # so the sample before that one counts too).
        # The Ruler hands Prometheus's rule manager its copy under this name, which the
        # group's evaluation offset is a hash of (homewatt/ruleralign.py).
        for loaded in settings.data.glob("run/rules/*.yml"):
            assert Path(ruleralign.managed_file(str(thanos.dir / "rule"), str(loaded.resolve()))).is_file()
        (series,) = promapi.query(settings.history_url, f"{READING15M.name}[10m]", extra=GRAFANA)
        assert len(series["values"]) >= 2
        # On the clock: the group runs every minute here, so every reading is on a whole minute,
        # and two consecutive readings are the counter's increase over that calendar minute.
        assert [float(t) % 60 for t, _ in series["values"]] == [0.0] * len(series["values"])
        for t, v in series["values"]:
            (recent,) = promapi.query(
                settings.history_url,
                'elec_energy_joules_total{sensor="s-002"}[3s]',
                at=float(t),
                extra=GRAFANA,
            )
            assert float(v) in [float(x) for _, x in recent["values"][-2:]], (t, v, recent["values"])
