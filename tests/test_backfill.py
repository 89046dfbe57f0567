"""Backfill: history read back through a real Prometheus equals the model, exactly once."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from backfill.__main__ import options_from_argv
from backfill.api import backfill as run_backfill
from backfill.api import first_metered_second
from backfill.ingest import Ingester, Journal, Target
from backfill.plan import SAMPLES_PER_CHUNK, make_plan
from backfill.run import BackfillError, expected_samples
from benchmarks._fleets import big_fleet
from benchmarks._fleets import write_fleet as write_generated_fleet
from homewatt import loadmodel, localday, promapi, replay
from homewatt.config import REPO, Settings
from homewatt.contract import BACKFILL_DONE, BACKFILL_JOB, BACKFILL_PLANNED, QUARTER_HOUR, READING1D
from homewatt.fleet import load_fleet
from homewatt.meter import Ledger, counter
from homewatt.procs import WaitTimeout, wait_until
from stack.services import Stack
from stack.supervisor import Supervisor

from .conftest import stack_env, write_fleet

pytestmark = pytest.mark.integration

# A live start that is not on any boundary, so nothing lines up by accident.
END = "2026-06-01T00:07:13+00:00"
END_TS = int(dt.datetime.fromisoformat(END).timestamp())
RAW_DAYS, HISTORY_DAYS = 2.0, 60.0


def args_for(data: Path, fleet: Path, **extra: object) -> list[str]:
    argv = [
        "--data",
        str(data),
        "--fleet",
        str(fleet),
        "--end",
        END,
        "--no-progress",
        "--raw-days",
        str(extra.get("raw_days", RAW_DAYS)),
        "--history-days",
        str(extra.get("history_days", HISTORY_DAYS)),
    ]
    return argv


@pytest.fixture(scope="module")
def backfilled(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("backfill")
    # One modelled home and the replayed real household.
    fleet_file = write_fleet(root / "fleet.yaml", ids=["s-002", "s-006"], index_date=dt.date(2026, 5, 29))
    data = root / "data"
    summary = run_backfill(options_from_argv(args_for(data, fleet_file)))
    settings = Settings.from_env({**os.environ, **stack_env(data, fleet_file)})
    with Supervisor(data / "logs") as sup:
        sup.run(Stack(settings).prometheus(standalone=True))
        yield {
            "prom": settings.prometheus_url,
            "fleet": load_fleet(fleet_file),
            "fleet_file": fleet_file,
            "data": data,
            "summary": summary,
            "plan": make_plan(END_TS, RAW_DAYS, HISTORY_DAYS),
        }


def value(prom: str, expr: str, at: int, sensor: str) -> float:
    return promapi.by_label(promapi.query(prom, expr, at=at))[sensor]


def test_summary_counts_what_was_written(backfilled):
    s = backfilled["summary"]
    assert s.written == len(backfilled["plan"].chunks) and s.skipped == 0
    # 2 sensors x 2 days x 86,400 s x 2 series, plus aggregates and the history.
    raw = 2 * 2 * 2 * 86400
    assert raw < s.samples < raw * 1.1
    assert s.blocks == sum(
        1 for p in (backfilled["data"] / "prometheus").iterdir() if (p / "meta.json").exists()
    )
    assert 0.5 < s.bytes / s.total_samples < 8
    text = s.text()
    assert "2026-05-30 00:07:13 UTC -> 2026-06-01 00:07:13 UTC" in text
    assert "bytes/sample" in text and str(backfilled["data"] / "prometheus") in text


def test_raw_values_equal_the_model(backfilled):
    prom, fleet = backfilled["prom"], backfilled["fleet"]
    ledger = Ledger(fleet.sensors)
    rng = np.random.default_rng(3)
    instants = [END_TS - 2 * 86400, END_TS - 1, *rng.integers(END_TS - 2 * 86400, END_TS, 10)]
    for t in map(int, instants):
        model_power = loadmodel.power(fleet.sensors, [t])[:, 0]
        model_counter = counter(ledger, [t])[:, 0]
        for i, s in enumerate(fleet.sensors):
            sel = f'{{sensor="{s.id}"}}'
            got = promapi.query(prom, f"elec_power_watts{sel}[999ms]", at=t)[0]["values"]
            assert got == [[t, str(model_power[i])]], (s.id, t)
            assert value(prom, f"elec_energy_joules_total{sel}", t, s.id) == model_counter[i]


def test_raw_series_have_the_live_labels(backfilled):
    got = promapi.query(backfilled["prom"], "elec_power_watts", at=END_TS - 1)
    assert {tuple(sorted(r["metric"].items())) for r in got} == {
        (
            ("__name__", "elec_power_watts"),
            ("instance", "homewatt-exporter"),
            ("job", "homewatt-exporter"),
            ("sensor", s.id),
        )
        for s in backfilled["fleet"].sensors
    }


def test_nothing_before_or_after_the_raw_window(backfilled):
    prom = backfilled["prom"]
    samples = promapi.query(prom, "elec_power_watts[3d]", at=END_TS + 86400)
    for r in samples:
        ts = [float(t) for t, _ in r["values"]]
        assert ts[0] == END_TS - 2 * 86400 and ts[-1] == END_TS - 1
        assert len(ts) == 2 * 86400  # one per second, no gap, no duplicate


def test_aggregates_equal_the_model(backfilled):
    prom, fleet = backfilled["prom"], backfilled["fleet"]
    rng = np.random.default_rng(5)
    minutes = (rng.integers(END_TS - 2 * 86400 + 120, END_TS, 6) // 60) * 60
    quarters = (rng.integers(END_TS - 2 * 86400 + 1800, END_TS, 4) // QUARTER_HOUR) * QUARTER_HOUR
    history = (rng.integers(END_TS - 50 * 86400, END_TS - 3 * 86400, 4) // QUARTER_HOUR) * QUARTER_HOUR
    cases = [(T, 60, "1m") for T in minutes] + [(T, 900, "15m") for T in (*quarters, *history)]
    for T, width, w in cases:
        T = int(T)
        for s in fleet.sensors:
            joules = int(loadmodel.power(s, np.arange(T - width, T)).sum())
            assert value(prom, f"sensor:elec_energy_joules:increase{w}", T, s.id) == joules, (T, w, s.id)
            assert value(prom, f"sensor:elec_power_watts:avg{w}", T, s.id) == pytest.approx(
                joules / width, abs=5e-4
            )
    # History keeps the counter's reading every quarter-hour, exactly.
    ledger = Ledger(fleet.sensors)
    for Q in map(int, history):
        got = promapi.by_label(promapi.query(prom, "sensor:elec_energy_joules_total:reading15m", at=Q))
        assert [got[s.id] for s in fleet.sensors] == list(counter(ledger, [Q])[:, 0])
        stamp = promapi.query(prom, "timestamp(sensor:elec_energy_joules_total:reading15m)", at=Q + 60)
        assert all(float(r["value"][1]) == Q for r in stamp)  # on the calendar


def test_quarter_series_is_continuous_across_the_raw_start(backfilled):
    prom = backfilled["prom"]
    plan = backfilled["plan"]
    got = promapi.query(prom, "sensor:elec_energy_joules:increase15m[3h]", at=plan.raw_start + 5400)
    for r in got:
        ts = [int(float(t)) for t, _ in r["values"]]
        assert all(t % QUARTER_HOUR == 0 for t in ts)
        assert np.all(np.diff(ts) == QUARTER_HOUR), "one sample per quarter-hour, none missing or doubled"


def day_totals(prom: str, day: dt.date) -> tuple[int, int, dict[str, dict[str, float]]]:
    """A UTC day's bounds, the counter's increase over it (from its quarter-hour readings, which
    the history and the raw window both hold) and the sum and count of its quarter-hours."""
    d0 = int(dt.datetime.combine(day, dt.time(), dt.UTC).timestamp())
    d1 = d0 + 86400
    quarters = f"sensor:elec_energy_joules:increase15m[86399s] @ {d1}"
    totals = {
        "increase": f"sensor:elec_energy_joules_total:reading15m @ {d1} - sensor:elec_energy_joules_total:reading15m @ {d0}",
        "quarters": f"sum_over_time({quarters})",
        "count": f"count_over_time({quarters})",
    }
    return d0, d1, {k: promapi.by_label(promapi.query(prom, q)) for k, q in totals.items()}


@pytest.mark.parametrize("day", [dt.date(2026, 5, 31), dt.date(2026, 5, 10)])  # raw, history
def test_a_day_adds_up(backfilled, day):
    prom, fleet = backfilled["prom"], backfilled["fleet"]
    d0, d1, got = day_totals(prom, day)
    raw = promapi.by_label(
        promapi.query(prom, f"elec_energy_joules_total @ {d1} - elec_energy_joules_total @ {d0}")
    )
    for s in fleet.sensors:
        exact = int(loadmodel.power(s, np.arange(d0, d1)).sum())
        assert got["increase"][s.id] == exact  # the readings' increase is the day's per-second power
        if d0 >= backfilled["plan"].raw_start:  # and so is the 1 s counter's, where it exists
            assert raw[s.id] == exact
        assert got["count"][s.id] == 96
        assert abs(got["quarters"][s.id] - got["increase"][s.id]) <= 0.005 * got["increase"][s.id]


def test_real_household_reads_back_the_csv_minute_means(backfilled):
    prom = backfilled["prom"]
    (real,) = [s for s in backfilled["fleet"].sensors if s.replay]
    rows = replay.load("uci-household")
    for T in (END_TS // 60 * 60 - 60 * k for k in (1, 7, 300, 2000)):
        row = (T - 60 - real.replay.start_ts) // 60 % len(rows)  # the minute [T-60, T)
        assert value(prom, "sensor:elec_power_watts:avg1m", T, real.id) == rows.watts[row]
        got = promapi.query(prom, f'elec_power_watts{{sensor="{real.id}"}}[59s]', at=T - 1)[0]["values"]
        assert {float(v) for _, v in got} == {float(rows.watts[row])} and len(got) == 60


def test_rerun_adds_nothing(backfilled):
    data = backfilled["data"]
    before = sorted(p.name for p in (data / "prometheus").iterdir())
    again = run_backfill(options_from_argv(args_for(data, backfilled["fleet_file"])))
    assert again.written == 0 and again.samples == 0
    assert again.skipped == len(backfilled["plan"].chunks)
    assert sorted(p.name for p in (data / "prometheus").iterdir()) == before
    assert "already there (skipped)" in again.text()


def test_another_span_over_the_same_data_is_refused(backfilled):
    args = options_from_argv(args_for(backfilled["data"], backfilled["fleet_file"], raw_days=3))
    with pytest.raises(BackfillError, match="another backfill"):
        run_backfill(args)


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def marked(marker: str) -> list[int]:
    """Processes whose environment carries `marker` (a killed run's workers inherit it)."""
    found = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            env = (p / "environ").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if int(p.name) != os.getpid() and marker in env:
            found.append(int(p.name))
    return found


def pushed(gateway: str) -> dict[str, float]:
    """The backfill's progress as the Pushgateway serves it."""
    text = requests.get(f"{gateway}/metrics", timeout=5).text
    return {
        s.name: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.labels.get("job") == BACKFILL_JOB
    }


def test_killed_run_leaves_valid_blocks_and_the_next_completes(tmp_path):
    fleet_file = write_fleet(tmp_path / "fleet.yaml", n=2, index_date=dt.date(2026, 5, 29))
    data = tmp_path / "data"
    settings = Settings.from_env({**os.environ, **stack_env(data, fleet_file)})
    with Supervisor(tmp_path / "logs") as sup:
        sup.run(Stack(settings).pushgateway())
        _killed_then_completed(data, fleet_file, settings.pushgateway_url)


def _killed_then_completed(data: Path, fleet_file: Path, gateway: str) -> None:
    """The kill, then the run that completes it; the progress pushed tells both."""
    progress = ["--pushgateway-url", gateway]
    argv = [
        sys.executable,
        "-m",
        "backfill",
        *args_for(data, fleet_file, raw_days=6, history_days=2),
        *progress,
    ]
    marker = f"HOMEWATT_TEST_MARK=kill-{os.getpid()}-{time.time_ns()}"
    env = {**os.environ, marker.split("=")[0]: marker.split("=")[1]}
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = data / "backfill" / "state.json"

    def mid_chunk() -> bool:
        """A chunk is in and promtool is busy with another (or the run is over)."""
        busy = any("promtool" in cmdline(pid) for pid in marked(marker))
        return proc.poll() is not None or (
            busy and state.exists() and len(json.loads(state.read_text())["done"]) >= 1
        )

    wait_until(mid_chunk, 120, "the backfill in the middle of a chunk", interval=0.02, errors=(ValueError,))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    # promtool dies with it at once (it would otherwise go on writing into staging for a second or more)...
    time.sleep(0.15)
    assert [c for c in map(cmdline, marked(marker)) if "promtool" in c] == []
    # ... and so do its worker processes: nothing keeps running.
    with contextlib.suppress(WaitTimeout):
        wait_until(lambda: not marked(marker), 1.5, "no process of the killed run", interval=0.1)
    assert [cmdline(pid) for pid in marked(marker)] == []
    plan = make_plan(END_TS, 6, 2)
    done = json.loads(state.read_text())["done"]
    assert 1 <= len(done) < len(plan.chunks)
    # What HomewattBackfillIncomplete reads: chunks missing, and no push since the kill.
    left = pushed(gateway)
    assert left[BACKFILL_PLANNED.name] == len(plan.chunks)
    assert left[BACKFILL_DONE.name] <= len(done)
    # Only whole blocks in the TSDB directory, and promtool reads them all.
    tsdb = data / "prometheus"
    for block in tsdb.iterdir():
        assert (block / "meta.json").exists() and (block / "index").exists(), block
    listing = subprocess.run(["promtool", "tsdb", "list", str(tsdb)], capture_output=True, text=True)
    assert listing.returncode == 0, listing.stderr
    # The next run completes the rest, and only the rest.
    summary = run_backfill(
        options_from_argv([*args_for(data, fleet_file, raw_days=6, history_days=2), *progress])
    )
    assert summary.skipped == len(done)
    assert summary.written == len(plan.chunks) - len(done)
    blocks = [b for d in json.loads(state.read_text())["done"].values() for b in d["blocks"]]
    assert sorted(b.split("/")[1] for b in blocks) == sorted(p.name for p in tsdb.iterdir())
    final = pushed(gateway)
    assert final[BACKFILL_DONE.name] == final[BACKFILL_PLANNED.name] == len(plan.chunks)
    assert final["push_time_seconds"] > left["push_time_seconds"]


def test_recover_finishes_a_half_done_move(tmp_path):
    work, tsdb = tmp_path / "work", tmp_path / "tsdb"
    journal = Journal.load(work / "state.json")
    journal.moving["raw-1-2"] = {"blocks": ["A", "B"], "samples": 10, "bytes": 5}
    journal.save()
    (tsdb / "A").mkdir(parents=True)  # moved before the kill
    (work / "staging" / "raw-1-2" / "B").mkdir(parents=True)  # not yet
    (work / "staging" / "raw-9-9").mkdir(parents=True)  # an unfinished chunk's leftovers
    finished = Ingester(Target(tsdb), work, journal).recover()
    assert finished == ["raw-1-2"]
    assert sorted(p.name for p in tsdb.iterdir()) == ["A", "B"]
    assert not (work / "staging").exists()
    assert Journal.load(work / "state.json").done["raw-1-2"]["blocks"] == ["A", "B"]


def test_backfilled_aggregates_agree_with_the_rules_evaluated_on_the_same_data(backfilled):
    """The rules of rules/, evaluated by Prometheus over the backfilled per-second data,
    agree with the backfilled aggregates: exactly on the boundary, and within the
    one extrapolated second when evaluated between samples as a live group is."""
    prom, fleet = backfilled["prom"], backfilled["fleet"]
    rules = {
        r["record"]: r["expr"]
        for f in sorted((REPO / "rules").glob("*.rules.yml"))
        for g in yaml.safe_load(f.read_text())["groups"]
        for r in g["rules"]
        if "record" in r
    }
    for T in (END_TS // 900 * 900 - 900 * k for k in (1, 5, 40)):
        for name, width in (("increase1m", 60), ("increase15m", 900)):
            record = f"sensor:elec_energy_joules:{name}"
            backfilled_value = promapi.by_label(promapi.query(prom, record, at=T))
            on_boundary = promapi.by_label(promapi.query(prom, rules[record], at=T))
            between = promapi.by_label(promapi.query(prom, rules[record], at=T + 0.4))
            for s in fleet.sensors:
                assert on_boundary[s.id] == backfilled_value[s.id]  # counter(T) - counter(T - width)
                peak = loadmodel.power(s, np.arange(T - width - 1, T + 2)).max()
                assert abs(between[s.id] - backfilled_value[s.id]) <= 2 * peak
        for name in ("avg1m", "avg15m"):
            record = f"sensor:elec_power_watts:{name}"
            backfilled_value = promapi.by_label(promapi.query(prom, record, at=T))
            between = promapi.by_label(promapi.query(prom, rules[record], at=T - 0.6))  # holds T-60 .. T-1
            for s in fleet.sensors:
                assert between[s.id] == pytest.approx(backfilled_value[s.id], abs=5e-4)
    # The daily reading: the rule, evaluated at a local midnight of the raw window or within the
    # quarter-hour after it, reads the counter the backfill wrote there; at no other time.
    daily = READING1D.name
    midnight = int(localday.midnights(END_TS - 86400, END_TS)[0])  # 2026-06-01 00:00 CEST
    backfilled_value = promapi.by_label(promapi.query(prom, daily, at=midnight))
    assert {float(r["value"][1]) for r in promapi.query(prom, f"timestamp({daily})", at=midnight)} == {
        float(midnight)
    }
    for at in (midnight, midnight + 0.4):
        assert promapi.by_label(promapi.query(prom, rules[daily], at=at)) == backfilled_value
    assert set(promapi.by_label(promapi.query(prom, rules[daily], at=midnight + 899))) == set(
        backfilled_value
    )
    for at in (midnight - 1, midnight + 900, midnight + 3600):
        assert promapi.query(prom, rules[daily], at=at) == []
    # One daily reading per local midnight of the history and the raw window, none elsewhere
    # (the modelled home; the replayed one has no reading where its source has a hole).
    plan = backfilled["plan"]
    counts = promapi.by_label(promapi.query(prom, f"count_over_time({daily}[70d])", at=END_TS))
    assert counts["s-002"] == len(localday.midnights(plan.history_start, END_TS))


def test_the_live_start_is_the_second_the_first_scrape_metered():
    """A scrape stamped 100.98 but rendered in second 101 carries second 101's counter:
    the raw window must then end before 101, not before 100 (else second 100 is lost)."""
    counter_at = {("s", 100): 5000.0, ("s", 101): 5300.0, ("s", 102): 5600.0}

    def at(sensor: str, second: int) -> float:
        return counter_at[(sensor, second)]

    assert first_metered_second([(100.98, 5300.0, "s"), (101.98, 5600.0, "s")], at) == 101
    assert first_metered_second([(100.25, 5000.0, "s")], at) == 100
    assert first_metered_second([(100.25, 5000.0, "s")], None) == 100


def test_a_chunk_holds_a_bounded_number_of_samples_whatever_the_fleet():
    """Memory is set by the chunk: a big fleet's windows are cut into groups of sensors, each
    sensor in exactly one group per window; the default fleet's plan is what it always was."""
    for n in (6, 1_000, 10_000):
        plan = make_plan(END_TS, 90, 1096, n)
        assert max(expected_samples(n, c, plan) for c in plan.chunks) <= SAMPLES_PER_CHUNK
        windows: dict[tuple[str, int, int], list[int]] = {}
        for c in plan.chunks:
            windows.setdefault((c.kind, c.start, c.end), []).extend(c.sensors(n))
        assert all(sorted(ids) == list(range(n)) for ids in windows.values())
        assert len({c.id for c in plan.chunks}) == len(plan.chunks)
    assert [c.id for c in make_plan(END_TS, 90, 1096, 6).chunks] == [
        c.id for c in make_plan(END_TS, 90, 1096).chunks
    ]


def test_a_generated_fleet_of_hundreds_is_backfilled_in_groups_with_the_right_totals(tmp_path):
    n, raw_days, history_days = 200, 0.125, 2.0
    fleet = big_fleet(n, dt.date(2026, 5, 31))
    fleet_file = write_generated_fleet(tmp_path / "fleet.yaml", fleet)
    data = tmp_path / "data"
    argv = args_for(data, fleet_file, raw_days=raw_days, history_days=history_days)
    summary = run_backfill(options_from_argv(argv))
    plan = make_plan(END_TS, raw_days, history_days, n)
    assert summary.written == len(plan.chunks) and summary.sensors == n
    metas = [json.loads(p.read_text()) for p in (data / "prometheus").glob("*/meta.json")]
    assert sum(m["stats"]["numSamples"] for m in metas) == summary.total_samples
    starts = [m["minTime"] for m in metas]
    assert len(set(starts)) < len(starts), "several groups' blocks share a window"
    picks = [fleet[0], fleet[n // 2], fleet[-1]]
    ledger = Ledger(picks)
    settings = Settings.from_env({**os.environ, **stack_env(data, fleet_file)})
    with Supervisor(data / "logs") as sup:
        sup.run(Stack(settings).prometheus(standalone=True))
        prom = settings.prometheus_url
        last, first = END_TS - 1, plan.raw_start
        assert len(promapi.query(prom, "elec_power_watts", at=last)) == n
        increase = promapi.by_label(
            promapi.query(prom, f"elec_energy_joules_total @ {last} - elec_energy_joules_total @ {first}")
        )
        assert len(increase) == n
        for s in picks:
            assert increase[s.id] == loadmodel.power(s, np.arange(first, last)).sum(), s.id
        for q in (plan.history_start, plan.history_start + 86_400 + 45 * 60):
            got = promapi.by_label(promapi.query(prom, "sensor:elec_energy_joules_total:reading15m", at=q))
            assert len(got) == n
            assert [got[s.id] for s in picks] == list(counter(ledger, [q])[:, 0]), q
