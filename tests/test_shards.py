"""Two Prometheus shards behind one Thanos Query give the numbers one Prometheus gives.

The set-up is `make up`'s with HOMEWATT_SHARDS=2, from the same service
definitions (stack/services.py, stack/thanos.py):

- the history, backfilled once without a shard label, in the bucket behind the
  store gateway;
- the last backfilled day written per shard (each shard's sensors only) into that
  shard's Prometheus, which its sidecar serves: what a day of live scraping leaves;
- both shards scraping the live exporter and keeping their sensors by hashmod, a
  Ruler per shard recording its own sensors.

The reference is one standalone Prometheus holding every block.  Every Live and
History panel query and the nightly job's payload are compared, at an instant in
the per-shard day, for a sensor of each shard; then a shard's sidecar is stopped,
and what Grafana and the job ask for fails instead of coming back smaller.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from homewatt import promapi, promconfig, shards
from homewatt.config import Settings
from homewatt.contract import DAY, HOUR, POWER, READING15M, SENSOR, SHARD_LABEL
from homewatt.fleet import load_fleet
from homewatt.procs import free_port, wait_until
from homewatt.window import Window, last_fire_time
from partner_job import fetch, job
from stack.services import Stack
from stack.supervisor import Supervisor
from stack.thanos import BINARY, SHARD_BASE, SHARD_STRIDE, Thanos, Timings

from . import bucket_setup
from .conftest import free_port_base, stack_env, write_fleet
from .test_thanos import GRAFANA, assert_panels_match

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not BINARY.exists(), reason="bin/thanos is built by `make thanos`"),
]

SHARDS = 2
IDS = ["s-001", "s-002", "s-003", "s-004"]
NOW = dt.datetime.now(dt.UTC)
LIVE_START = (int(NOW.timestamp()) - 2 * HOUR) // HOUR * HOUR  # the per-shard day ends here
SHARD_DAY = LIVE_START - DAY  # the bucket's history ends here
AT = dt.datetime.fromtimestamp(LIVE_START - HOUR, dt.UTC)  # "now" for the dashboards


def by_shard() -> dict[int, list[str]]:
    out: dict[int, list[str]] = {i: [] for i in range(SHARDS)}
    for sensor in IDS:
        out[shards.shard_of(sensor, SHARDS)].append(sensor)
    return out


def test_the_fleet_spans_both_shards():
    assert all(by_shard().values()), by_shard()  # else the test below would prove less


def test_each_shards_config_is_valid_and_keeps_its_share(tmp_path):
    """promtool accepts every shard's config; shard 0 alone scrapes the parts' own metrics."""
    stack = Stack(Settings.from_env({**os.environ, "HOMEWATT_SHARDS": "2", "HOMEWATT_DATA": str(tmp_path)}))
    names = [s.name for s in stack.services()]
    assert names[-2:] == ["prometheus", "prometheus-1"]
    thanos = stack.thanos()
    assert [s.name for s in thanos.services()][:6] == [
        "thanos-sidecar",
        "thanos-sidecar-1",
        "thanos-store",
        "thanos-query",
        "thanos-rule",
        "thanos-rule-1",
    ]
    jobs = []
    for shard, name in enumerate(("prometheus.yml", "prometheus-1.yml")):
        path = tmp_path / "run" / name
        out = subprocess.run(["promtool", "check", "config", str(path)], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr + out.stdout
        doc = yaml.safe_load(path.read_text())
        assert doc["global"]["external_labels"][SHARD_LABEL] == str(shard)
        jobs.append({j["job_name"]: j for j in doc["scrape_configs"]})
        for name in promconfig.SENSOR_JOBS:
            keep = shards.keep_own(shard, SHARDS)
            assert jobs[-1][name]["metric_relabel_configs"][-len(keep) :] == keep
    assert set(jobs[1]) == promconfig.SHARD_JOBS < set(jobs[0])
    # Each listens where stack/thanos.py says, the second shard among the Thanos ports.
    base = stack.settings.thanos_port_base + SHARD_BASE
    assert stack.prometheus_urls()[1] == f"http://127.0.0.1:{base}"
    assert thanos.addr("rule-http", 2) == f"127.0.0.1:{base + SHARD_STRIDE + 4}"


def copy_blocks(src: Path, tsdb: Path) -> None:
    for stream_dir in src.iterdir():
        for block in stream_dir.iterdir():
            if (block / "meta.json").exists():
                shutil.copytree(block, tsdb / block.name)


@pytest.fixture(scope="module")
def sharded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("shards")
    fleet_file = write_fleet(root / "fleet.yaml", ids=IDS, index_date=NOW.date())
    data = root / "data"
    env = stack_env(data, fleet_file)
    env |= {
        "HISTORY_URL": f"http://127.0.0.1:{free_port()}",
        "HOMEWATT_THANOS_PORT_BASE": str(free_port_base(SHARD_BASE + SHARD_STRIDE * (SHARDS - 1))),
        "HOMEWATT_SHARDS": str(SHARDS),
    }
    settings = Settings.from_env({**os.environ, **env})
    stack = Stack(settings)
    # The Rulers evaluate every minute here (the committed 15m groups, interval shortened).
    rules = yaml.safe_load((Path(promconfig.SOURCE).parent / promconfig.RULER_RULES[0]).read_text())
    for group in rules["groups"]:
        group["interval"] = "1m"
    fast = root / "homewatt-15m-every-minute.rules.yml"
    fast.write_text(yaml.safe_dump(rules))
    timings = Timings(**{**bucket_setup.TEST_TIMINGS, "store_sync": "5s"})
    thanos = Thanos(settings, timings=timings, rule_files=(fast,))
    objstore = thanos.objstore_config()
    # The history: once, every sensor, no shard label, uploaded to the bucket.
    history = dt.datetime.fromtimestamp(SHARD_DAY, dt.UTC)
    bucket_setup.fill(root, data, fleet_file, {"history": (history, 2, 20)}, objstore)
    # The last day, per shard: into that shard's Prometheus only.
    parts: bucket_setup.Parts = {"history": (history, 2, 20)}
    for shard, ids in by_shard().items():
        shard_fleet = write_fleet(root / f"fleet-{shard}.yaml", ids=ids, index_date=NOW.date())
        end = dt.datetime.fromtimestamp(LIVE_START, dt.UTC)
        name = f"shard-{shard}"
        bucket_setup.write_part(root / f"data-{shard}", shard_fleet, end, 1, 0, root / name)
        parts[name] = (end, 1, 0)
        tsdb = thanos.tsdb(shard)
        tsdb.mkdir(parents=True)
        copy_blocks(root / name, tsdb)
    reference = root / "reference"
    bucket_setup.reference_tsdb(root, parts, reference / "prometheus")
    ref_settings = Settings.from_env({**os.environ, **stack_env(reference, fleet_file)})
    (data / "pushgateway").mkdir(parents=True, exist_ok=True)
    with Supervisor(data / "logs") as sup:
        sup.run(Stack(ref_settings).prometheus(standalone=True))
        for service in stack.services():  # Pushgateway, exporter, both shards
            sup.run(service)
        for service in thanos.services()[:6]:  # sidecars, store, Query, Rulers
            sup.run(service)
        # Query's endpoints are strict: it answers once it reaches every one of them.
        wait_until(
            lambda: promapi.query(settings.history_url, "count(up)", extra=GRAFANA),
            60,
            "Query reaching the sidecars, the store and the Rulers",
            errors=(promapi.PromError,),
        )
        yield {
            "settings": settings,
            "stack": stack,
            "thanos": thanos,
            "sup": sup,
            "native": ref_settings.prometheus_url,
            "query": settings.history_url,
            "fleet": load_fleet(fleet_file),
        }


def test_each_shard_keeps_exactly_its_sensors_live(sharded):
    """Prometheus's hashmod puts each sensor where shards.shard_of says, and Query shows it once."""
    stack: Stack = sharded["stack"]
    for shard, url in enumerate(stack.prometheus_urls()):
        wanted = set(by_shard()[shard])

        def live(url: str = url) -> set[str]:
            return {r["metric"][SENSOR] for r in promapi.query(url, POWER.name)}

        def all_there(url: str = url, wanted: set[str] = wanted) -> bool:
            return live(url) >= wanted

        wait_until(all_there, 30, f"live power of {sorted(wanted)} in shard {shard}")
        assert live() == wanted
    fresh = promapi.query(sharded["query"], f"count by ({SENSOR}) (time() - timestamp({POWER.name}) < 5)")
    assert {r["metric"][SENSOR]: r["value"][1] for r in fresh} == dict.fromkeys(IDS, "1")
    # Live and the shard's backfilled day are one series, with the labels the backfill writes.
    for r in promapi.query(sharded["query"], f"last_over_time({POWER.name}[1d])", extra=GRAFANA):
        assert set(r["metric"]) == {"__name__", "instance", "job", SENSOR}, r["metric"]
    day = promapi.query(sharded["query"], f"count by ({SENSOR}) (last_over_time({POWER.name}[1d]))")
    assert {r["metric"][SENSOR]: r["value"][1] for r in day} == dict.fromkeys(IDS, "1")


def test_every_dashboard_query_gives_the_single_prometheus_numbers(sharded):
    compared: set[str] = set()
    for ids in by_shard().values():
        sensor = ids[0]
        compared |= set(assert_panels_match(sharded["native"], sharded["query"], "history", AT, sensor))
        compared |= set(assert_panels_match(sharded["native"], sharded["query"], "live", AT, sensor, [None]))
    assert {"Mean power (kW)", "Energy per day (kWh), each bar on its local day"} <= compared


def test_the_partner_job_reads_the_same_payloads(sharded):
    tz = sharded["fleet"].timezone
    window = Window.ending(last_fire_time(dt.datetime.fromtimestamp(LIVE_START, dt.UTC), tz), tz)
    for sensor in IDS:
        bodies = [
            json.dumps(
                job.payload(sensor, window, fetch.minute_wh(fetch.counter_readings(url, sensor, window)))
            )
            for url in (sharded["native"], sharded["query"])
        ]
        assert bodies[0] == bodies[1], sensor
        assert sum(v is not None for v in json.loads(bodies[0])["values"]) > 2 * 1440  # both shards' days


def test_each_ruler_records_its_own_shards_sensors_once(sharded):
    """Without deduplication, each sensor's live readings carry the one shard that keeps it, on
    whole minutes (the Rulers' groups run every minute here)."""
    url = sharded["query"]
    expr = f'{READING15M.name}{{{SHARD_LABEL}!=""}}[3m]'

    def readings() -> dict[str, list[dict[str, Any]]] | None:
        got: dict[str, list[dict[str, Any]]] = {}
        for r in promapi.query(url, expr, extra={"dedup": "false"}):
            got.setdefault(r["metric"][SENSOR], []).append(r)
        return got if set(got) == set(IDS) else None

    got = wait_until(readings, 180, "a Ruler reading for every sensor", interval=5)
    for sensor, series in got.items():
        assert [r["metric"][SHARD_LABEL] for r in series] == [str(shards.shard_of(sensor, SHARDS))]
        assert all(float(t) % 60 == 0 for t, _ in series[0]["values"])


def test_a_shard_down_is_an_error_never_a_smaller_total(sharded):
    """With shard 1's sidecar stopped, what Grafana's History datasource and the nightly job
    ask for fails for every sensor; a query that accepts partial answers is told."""
    sup: Supervisor = sharded["sup"]
    thanos: Thanos = sharded["thanos"]
    url = sharded["query"]
    total = f"sum(last_over_time({POWER.name}[1h] @ {int(AT.timestamp())}))"
    want = float(promapi.query(sharded["native"], total)[0]["value"][1])
    assert float(promapi.query(url, total, extra=GRAFANA)[0]["value"][1]) == pytest.approx(want)
    sidecar = next(s for s in sup.services if s.name == "thanos-sidecar-1")
    sup.stop_one(sidecar)
    try:
        with pytest.raises(promapi.PromError):
            promapi.query(url, total, extra=GRAFANA)
        # The job cannot read even a sensor of the shard that is up: the store set is
        # incomplete, so the sensor stays for the next run instead of going out with holes.
        tz = sharded["fleet"].timezone
        window = Window.ending(last_fire_time(dt.datetime.fromtimestamp(LIVE_START, dt.UTC), tz), tz)
        with pytest.raises(promapi.PromError):
            fetch.counter_readings(url, by_shard()[0][0], window)
        # The Prometheus UI's default (partial answers allowed) shows the data with a warning.
        body = requests.get(
            f"{url}/api/v1/query", params={"query": total, "partial_response": "true"}, timeout=30
        ).json()
        assert body["status"] == "success" and body.get("warnings"), body
    finally:
        sup.run(thanos.sidecar(1))
    wait_until(
        lambda: float(promapi.query(url, total, extra=GRAFANA)[0]["value"][1]) == pytest.approx(want),
        60,
        "the total back once the shard is",
        errors=(promapi.PromError, IndexError),
    )
