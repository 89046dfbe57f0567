"""Backfill into a Thanos bucket directory: two labelled block streams, each complete on its own.

No Thanos binary exists here, so each stream's directory is opened by a real
Prometheus as its TSDB: what it serves is what a store gateway serves from
that stream.  The quarter stream alone must answer three years of exact
quarter-hours and day totals (raw data expires from the bucket); the raw stream
must hold the per-second and 1m data and nothing that would double the
quarter stream's series.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest
import requests
import yaml

from backfill.__main__ import options_from_argv
from backfill.api import backfill as run_backfill
from backfill.ingest import THANOS_SOURCE
from backfill.plan import make_plan
from backfill.run import BackfillError
from homewatt import contract, loadmodel, promapi, streams
from homewatt.config import REPO
from homewatt.contract import QUARTER_HOUR
from homewatt.fleet import load_fleet
from homewatt.meter import Ledger, counter
from stack.supervisor import Supervisor

from .conftest import serve_blocks, write_fleet
from .test_backfill import END_TS, args_for, day_totals

pytestmark = pytest.mark.integration

RAW_DAYS, HISTORY_DAYS = 1.0, 20.0


@pytest.fixture(scope="module")
def bucket(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("bucket")
    fleet_file = write_fleet(root / "fleet.yaml", ids=["s-001", "s-006"], index_date=dt.date(2026, 5, 29))
    out = root / "outbox"
    argv = args_for(root / "data", fleet_file, raw_days=RAW_DAYS, history_days=HISTORY_DAYS)
    summary = run_backfill(options_from_argv([*argv, "--bucket-dir", str(out)]))
    return {"root": root, "out": out, "fleet_file": fleet_file, "summary": summary, "argv": argv}


def metas(d: Path) -> list[dict]:
    return [json.loads((b / "meta.json").read_text()) for b in sorted(d.iterdir()) if b.is_dir()]


def test_blocks_carry_their_stream_labels_taken_from_the_prometheus_config(bucket):
    out = bucket["out"]
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["quarter", "raw"]
    expected = yaml.safe_load((REPO / "prometheus" / "prometheus.yml").read_text())["global"][
        "external_labels"
    ]
    for stream in contract.STREAMS:
        blocks = metas(out / stream)
        assert blocks, stream
        for meta in blocks:
            thanos = meta["thanos"]
            assert thanos["labels"] == {**expected, "homewatt_stream": stream}
            assert thanos["downsample"] == {"resolution": 0} and thanos["source"] == THANOS_SOURCE
            assert thanos["segment_files"] and meta["compaction"]["level"] == 1  # upload-blocks takes level 1
    # No two blocks of a stream overlap: the compactor would halt on that.
    for stream in contract.STREAMS:
        spans = sorted((m["minTime"], m["maxTime"]) for m in metas(out / stream))
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False)), stream


def test_summary_prints_one_upload_command_per_stream(bucket):
    text = bucket["summary"].text()
    out = bucket["out"]
    config = REPO / "thanos" / "objstore.filesystem.yml"
    for stream in contract.STREAMS:
        assert (
            f"thanos tools bucket upload-blocks --objstore.config-file={config} --path={out / stream} "
            f"'--label=homewatt_stream=\"{stream}\"'"
        ) in text


def test_upload_without_thanos_says_so_and_keeps_the_blocks(bucket, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    argv = [*bucket["argv"], "--bucket-dir", str(bucket["out"]), "--upload", "--thanos", "thanos"]
    with pytest.raises(BackfillError, match="needs the thanos binary"):
        run_backfill(options_from_argv(argv))
    assert metas(bucket["out"] / "raw")  # nothing lost


def test_quarter_stream_alone_holds_exact_quarters_and_day_totals(bucket):
    fleet = load_fleet(bucket["fleet_file"])
    settings, prometheus = serve_blocks(
        bucket["out"] / "quarter", bucket["root"] / "serve-quarter", bucket["fleet_file"]
    )
    prom = settings.prometheus_url
    plan = make_plan(END_TS, RAW_DAYS, HISTORY_DAYS)
    ledger = Ledger(fleet.sensors)
    with Supervisor(bucket["root"] / "logs-quarter") as sup:
        sup.run(prometheus)
        # Nothing per-second, no 1m series: those are the raw stream's.
        for name in (
            "elec_power_watts",
            "sensor:elec_power_watts:avg1m",
            "sensor:elec_energy_joules:increase1m",
        ):
            assert promapi.query(prom, f"count_over_time({name}[30d])", at=END_TS) == [], name
        # The counter's reading every quarter-hour and the 15m series, on the calendar, across the raw start.
        for r in promapi.query(prom, "sensor:elec_energy_joules_total:reading15m[2d]", at=END_TS):
            ts = [int(float(t)) for t, _ in r["values"]]
            assert all(t % QUARTER_HOUR == 0 for t in ts) and np.all(np.diff(ts) == QUARTER_HOUR)
        # 31 May straddles the raw start (00:07:13): its first minutes come from the history.
        may31 = int(dt.datetime(2026, 5, 31, tzinfo=dt.UTC).timestamp())
        assert may31 < plan.raw_start < may31 + 86400
        for day in (dt.date(2026, 5, 31), dt.date(2026, 5, 20)):
            d0, d1, totals = day_totals(prom, day)
            for s in fleet.sensors:
                exact = int(loadmodel.power(s, np.arange(d0, d1)).sum())
                assert totals["increase"][s.id] == exact == totals["quarters"][s.id], (day, s.id)
                assert totals["count"][s.id] == 96
        # The counter at the raw start's quarter, read from this stream only, is the meter's.
        q = -(-plan.raw_start // QUARTER_HOUR) * QUARTER_HOUR
        at_q = promapi.by_label(promapi.query(prom, "sensor:elec_energy_joules_total:reading15m", at=q))
        assert [at_q[s.id] for s in fleet.sensors] == list(counter(ledger, [q])[:, 0])


def test_raw_stream_alone_holds_the_seconds_and_minutes(bucket):
    fleet = load_fleet(bucket["fleet_file"])
    settings, prometheus = serve_blocks(
        bucket["out"] / "raw", bucket["root"] / "serve-raw", bucket["fleet_file"]
    )
    prom = settings.prometheus_url
    with Supervisor(bucket["root"] / "logs-raw") as sup:
        sup.run(prometheus)
        for name in ("sensor:elec_power_watts:avg15m", "sensor:elec_energy_joules:increase15m"):
            assert promapi.query(prom, f"count_over_time({name}[30d])", at=END_TS) == [], name
        n = promapi.by_label(promapi.query(prom, "count_over_time(elec_power_watts[1d])", at=END_TS - 1))
        assert set(n.values()) == {86400.0}
        T = END_TS // 60 * 60 - 600
        minute = promapi.by_label(promapi.query(prom, "sensor:elec_energy_joules:increase1m", at=T))
        for s in fleet.sensors:
            assert minute[s.id] == int(loadmodel.power(s, np.arange(T - 60, T)).sum())


def test_rerun_into_the_bucket_adds_nothing(bucket):
    before = {s: sorted(p.name for p in (bucket["out"] / s).iterdir()) for s in contract.STREAMS}
    again = run_backfill(options_from_argv([*bucket["argv"], "--bucket-dir", str(bucket["out"])]))
    assert again.written == 0 and again.skipped == len(make_plan(END_TS, RAW_DAYS, HISTORY_DAYS).chunks)
    assert {s: sorted(p.name for p in (bucket["out"] / s).iterdir()) for s in contract.STREAMS} == before


def test_prometheus_reports_the_labels_the_backfill_writes(live_stack):
    """The running Prometheus's external labels are what the blocks say (same file, same labels)."""
    cfg = requests.get(f"{live_stack.prom}/api/v1/status/config", timeout=10).json()["data"]["yaml"]
    running = yaml.safe_load(cfg)["global"]["external_labels"]
    assert running == streams.stream_labels(contract.RAW_STREAM)
