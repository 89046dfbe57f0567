"""Nightly partner export against real Prometheus and Pushgateway and the reference partner over HTTP."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import subprocess
import sys
import threading
import time
import zoneinfo

import numpy as np
import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from backfill.__main__ import options_from_argv
from backfill.api import backfill as run_backfill
from homewatt import loadmodel, promapi
from homewatt.config import REPO, Settings, read_token
from homewatt.contract import LAST_RUN_WINDOW_END, OUTBOX_JOB, OUTBOX_OLDEST, OUTBOX_PENDING, OUTBOX_REJECTED
from homewatt.fleet import DEFAULT_FLEET, load_fleet
from homewatt.window import Window, fire_times
from partner_job import fetch, job
from partner_job.__main__ import main as partner_main
from partner_job.client import PartnerClient
from partner_job.gate import Gate
from partner_job.outbox import Entry, Outbox, Pending
from partner_job.scheduler import Scheduler, State
from stack.services import Stack
from stack.supervisor import Supervisor

from .conftest import query_until, stack_env, write_fleet


def cli(env: dict[str, str], *argv: str, code: str | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m partner_job ARGV` in a child process with `env` over ours, or `python -c CODE ARGV`
    (a job with something patched in), its output captured."""
    entry = ["-c", code] if code else ["-m", "partner_job"]
    return subprocess.run(
        [sys.executable, *entry, *argv],
        env={**os.environ, **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )


PARIS = dt.timezone(dt.timedelta(hours=1))
MIDNIGHT = dt.datetime(2026, 11, 30, tzinfo=PARIS)  # window: Oct 31 00:00 CET .. Nov 30 00:00 CET
TOKEN = "test-token-123"


# --- the window and the fire times ------------------------------------------------


def test_window_lengths_across_the_dst_nights_of_2027():
    lengths = {}
    for fire in fire_times(dt.datetime(2027, 1, 1, tzinfo=dt.UTC)):
        if fire.year > 2027:
            break
        lengths[fire.date()] = Window.ending(fire).minutes
    assert min(lengths.values()) == 43_140 and max(lengths.values()) == 43_260
    assert lengths[dt.date(2027, 3, 28)] == 43_200  # the DST night itself is not in its window yet
    assert lengths[dt.date(2027, 3, 29)] == 43_140  # March 28 lost an hour
    assert lengths[dt.date(2027, 4, 27)] == 43_140
    assert lengths[dt.date(2027, 4, 28)] == 43_200
    assert lengths[dt.date(2027, 11, 1)] == 43_260  # October 31 had 25 hours
    assert Window.ending(
        dt.datetime(2027, 3, 29, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    ).start.isoformat() == ("2027-02-27T00:00:00+01:00")
    with pytest.raises(ValueError, match="not a local midnight"):
        Window.ending(dt.datetime(2027, 3, 29, 1, tzinfo=dt.UTC))


@pytest.mark.integration
def test_next_prints_fire_times_with_offsets():
    out = cli({}, "next", "--after", "2027-10-30T12:00:00+02:00", "--count", "3").stdout.split()
    assert out == ["2027-10-31T00:00:00+02:00", "2027-11-01T00:00:00+01:00", "2027-11-02T00:00:00+01:00"]


def test_the_window_follows_the_fleets_timezone(tmp_path, monkeypatch, capsys):
    """A fleet in New York fires at New York's midnights, over 30 of its local days."""
    doc = yaml.safe_load(DEFAULT_FLEET.read_text())
    doc["timezone"] = "America/New_York"
    doc["sensors"] = doc["sensors"][:1]
    fleet_file = tmp_path / "fleet.yaml"
    fleet_file.write_text(yaml.safe_dump(doc))
    monkeypatch.setenv("HOMEWATT_FLEET", str(fleet_file))
    # 2027-03-14 is the US spring-forward day (Europe changes two weeks later).
    assert partner_main(["next", "--after", "2027-03-13T12:00:00-05:00", "--count", "2"]) == 0
    assert capsys.readouterr().out.split() == ["2027-03-14T00:00:00-05:00", "2027-03-15T00:00:00-04:00"]
    window = Window.ending(
        dt.datetime(2027, 3, 15, tzinfo=zoneinfo.ZoneInfo("America/New_York")), doc["timezone"]
    )
    assert window.minutes == 30 * 1440 - 60
    with pytest.raises(ValueError, match="not a local midnight in America/New_York"):
        Window.ending(dt.datetime(2027, 3, 15, tzinfo=zoneinfo.ZoneInfo("Europe/Paris")), doc["timezone"])


# --- the scheduler (its clock is ours) --------------------------------------------


class Clock:
    def __init__(self, t: dt.datetime):
        self.t = t

    def __call__(self) -> dt.datetime:
        return self.t


@pytest.mark.integration
def test_the_token_comes_from_the_environment_or_a_file_never_empty(tmp_path):
    secret = tmp_path / "partner_token"
    secret.write_text("s3cret\n")
    assert read_token({"PARTNER_TOKEN_FILE": str(secret)}) == "s3cret"
    assert read_token({"PARTNER_TOKEN": "direct", "PARTNER_TOKEN_FILE": str(secret)}) == "direct"
    secret.write_text("")  # a compose secret made from an unset PARTNER_TOKEN
    with pytest.raises(RuntimeError, match="is empty: no partner token"):
        read_token({"PARTNER_TOKEN_FILE": str(secret)})
    with pytest.raises(RuntimeError, match="no partner token"):
        read_token({})
    # The reference partner refuses to start on it, so compose's healthcheck keeps the scheduler from starting.
    proc = subprocess.run(
        [sys.executable, "-m", "reference_partner", "--listen", "127.0.0.1:1"],
        env={**os.environ, "PARTNER_TOKEN": "", "PARTNER_TOKEN_FILE": str(secret)},
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert proc.returncode == 2 and "is empty: no partner token" in proc.stderr


def test_scheduler_runs_each_midnight_once_and_catches_up_once(tmp_path):
    ran: list[str] = []
    clock = Clock(dt.datetime(2027, 3, 27, 15, 0, tzinfo=dt.UTC))
    sched = Scheduler(
        State(tmp_path / "state.json"), lambda m: ran.append(m.isoformat()), lambda: None, clock
    )
    sched.tick()  # first start: the last midnight at once (a breakdown right away)
    sched.tick()
    assert ran == ["2027-03-27T00:00:00+01:00"]
    clock.t = dt.datetime(2027, 3, 27, 23, 0, 1, tzinfo=dt.UTC)  # 00:00:01 local, DST night
    sched.tick()
    assert ran[-1] == "2027-03-28T00:00:00+01:00"
    # Down for three nights: one catch-up run, for the latest midnight only.
    clock.t = dt.datetime(2027, 3, 31, 9, 0, tzinfo=dt.UTC)
    sched.tick()
    sched.tick()
    assert ran[-1] == "2027-03-31T00:00:00+02:00" and len(ran) == 3
    # A restart reads the state: nothing runs twice.
    again = Scheduler(
        State(tmp_path / "state.json"), lambda m: ran.append(m.isoformat()), lambda: None, clock
    )
    again.tick()
    assert len(ran) == 3
    # It sleeps until the next midnight, or the outbox retry, whichever comes first.
    clock.t = dt.datetime(2027, 3, 31, 21, 59, 0, tzinfo=dt.UTC)
    assert again.next_wakeup() == pytest.approx(60.0)


def test_a_failed_run_is_retried_not_skipped(tmp_path):
    calls = []

    def flaky(m):
        calls.append(m)
        if len(calls) == 1:
            raise RuntimeError("Prometheus down")

    sched = Scheduler(
        State(tmp_path / "s.json"), flaky, lambda: None, Clock(dt.datetime(2027, 5, 2, 8, tzinfo=dt.UTC))
    )
    with pytest.raises(RuntimeError):
        sched.tick()
    sched.tick()
    assert len(calls) == 2 and calls[0] == calls[1]


# --- against the real stack ---------------------------------------------------------


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    root = tmp_path_factory.mktemp("partner")
    fleet_file = write_fleet(root / "fleet.yaml", ids=["s-001", "s-006"], index_date=dt.date(2026, 10, 29))
    data = root / "data"
    end = "2026-11-29T23:30:00+00:00"  # raw data covers the whole window ending MIDNIGHT
    run_backfill(
        options_from_argv(
            [
                "--data",
                str(data),
                "--fleet",
                str(fleet_file),
                "--end",
                end,
                "--raw-days",
                "31",
                "--history-days",
                "0",
                "--no-progress",
            ]
        )
    )
    env = {**stack_env(data, fleet_file), "PARTNER_TOKEN": TOKEN}
    with pytest.MonkeyPatch.context() as mp:  # the jobs read their settings from the environment
        for k, v in env.items():
            mp.setenv(k, v)
        settings = Settings.from_env()
        st = Stack(settings)
        with Supervisor(data / "logs") as sup:
            for service in (st.pushgateway(), st.prometheus(standalone=True), st.partner()):
                sup.run(service)
            yield {"settings": settings, "fleet": load_fleet(fleet_file), "env": env, "data": data}


def client(settings, **kw) -> PartnerClient:
    return PartnerClient(settings.partner_url, TOKEN, base_delay=0.05, max_delay=0.2, **kw)


def faults(settings, **spec) -> None:
    r = requests.post(
        f"{settings.partner_url}/_faults", json=spec, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5
    )
    r.raise_for_status()


def outbox_state(settings: Settings) -> dict[str, dict[str, float]]:
    """The outbox gauges the Pushgateway serves (job partner_job_outbox), by name and sensor."""
    text = requests.get(f"{settings.pushgateway_url}/metrics", timeout=5).text
    out: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.labels.get("job") == OUTBOX_JOB and s.name != "push_time_seconds":
                out.setdefault(s.name, {})[s.labels.get("sensor", "")] = s.value
    return out


@pytest.mark.integration
def test_fetch_is_chunked_and_equals_the_counter_per_minute(stack, monkeypatch):
    settings, fleet = stack["settings"], stack["fleet"]
    window = Window.ending(MIDNIGHT)
    calls = []
    real = promapi.query_range

    def counting(base, expr, start, end, step, timeout=60, extra=None):
        calls.append((end - start) / step + 1)
        assert extra and extra["partial_response"] == "false"  # through Query: never a partial answer
        return real(base, expr, start, end, step, timeout, extra)

    monkeypatch.setattr(promapi, "query_range", counting)
    s = fleet.get("s-001")
    values = fetch.minute_wh(fetch.counter_readings(settings.prometheus_url, s.id, window))
    assert len(calls) >= 4 and max(calls) <= 11_000 and sum(calls) == window.minutes + 1
    assert len(values) == window.minutes == 43_200
    assert all(v is not None for v in values)
    for i in (0, 1, 777, 20_000, 43_199):
        t = window.start_ts + 60 * i
        assert values[i] == pytest.approx(loadmodel.power(s, np.arange(t, t + 60)).sum() / 3600, rel=1e-12)


@pytest.mark.integration
def test_a_silent_meter_gives_nulls(stack):
    # The window ending Dec 1 reaches past the data (which ends Nov 29 23:30 UTC).
    window = Window.ending(dt.datetime(2026, 12, 1, tzinfo=PARIS))
    values = fetch.minute_wh(fetch.counter_readings(stack["settings"].prometheus_url, "s-001", window))
    first_null = values.index(None)
    # The last sample is at 23:29:59; the reading at 23:31 finds nothing within 2 s.
    assert window.start_ts + 60 * first_null == int(
        dt.datetime(2026, 11, 29, 23, 30, tzinfo=dt.UTC).timestamp()
    )
    assert set(values[first_null:]) == {None}


@pytest.mark.integration
def test_run_delivers_and_the_breakdown_is_in_prometheus(stack):
    settings, fleet = stack["settings"], stack["fleet"]
    stats = job.run(settings, fleet.ids(), MIDNIGHT, client(settings), progress=False)
    assert (stats.sensors, stats.delivered, stats.failed, stats.rejected) == (2, 2, 0, 0)
    assert not Outbox(settings.data / "outbox").pending()
    got = query_until(settings.prometheus_url, "sum by (sensor) (elec_usage_share_ratio)", 2, 60)
    assert {r["metric"]["sensor"]: float(r["value"][1]) for r in got} == pytest.approx(
        {"s-001": 1.0, "s-006": 1.0}, abs=1e-3
    )
    window = Window.ending(MIDNIGHT)
    for s in fleet.sensors:
        joules = float(
            promapi.query(settings.prometheus_url, f'sum(elec_usage_energy_joules{{sensor="{s.id}"}})')[0][
                "value"
            ][1]
        )
        exact = loadmodel.power(s, np.arange(window.start_ts, window.end_ts)).sum()
        assert joules == pytest.approx(exact, rel=1e-3)
        landed = promapi.query(
            settings.prometheus_url, f'partner_job_last_success_timestamp_seconds{{sensor="{s.id}"}}'
        )
        assert time.time() - float(landed[0]["value"][1]) < 120
        win = promapi.query(
            settings.prometheus_url, f'partner_job_window_start_timestamp_seconds{{sensor="{s.id}"}}'
        )
        assert float(win[0]["value"][1]) == window.start_ts


@pytest.mark.integration
@pytest.mark.parametrize(
    ("spec", "retried"),
    [
        ({"mode": "429", "count": 2, "retry_after": 1}, True),
        ({"mode": "503", "count": 1, "retry_after": 1}, True),
        ({"mode": "500", "count": 2}, True),
        ({"mode": "nonsense", "count": 2}, True),
        ({"mode": "slow", "count": 1, "delay": 2.5}, True),
    ],
)
def test_each_transient_failure_ends_delivered(stack, spec, retried):
    settings, fleet = stack["settings"], stack["fleet"]
    at = dt.datetime(2026, 11, 29, tzinfo=PARIS)
    faults(settings, **spec)
    stats = job.run(settings, fleet.ids()[:1], at, client(settings, timeout=1.5), progress=False)
    assert (stats.delivered, stats.failed, stats.rejected) == (1, 0, 0)
    assert stats.retried == int(retried)


@pytest.mark.integration
def test_an_outage_keeps_the_payload_until_it_lands(stack):
    settings, fleet = stack["settings"], stack["fleet"]
    faults(settings, mode="503", count=10, retry_after=0)
    stats = job.run(
        settings,
        fleet.ids()[:1],
        dt.datetime(2026, 11, 28, tzinfo=PARIS),
        client(settings, max_attempts=3),
        progress=False,
    )
    assert (stats.delivered, stats.failed) == (0, 1)
    outbox = Outbox(settings.data / "outbox")
    (entry,) = outbox.pending()
    assert entry.key == "s-001:2026-11-28" and entry.attempts == 3 and "503" in entry.last_error
    # What the backlog alert reads: one payload pending since it was first written.
    state = outbox_state(settings)
    assert state[OUTBOX_PENDING.name] == {"s-001": 1.0}
    assert state[OUTBOX_OLDEST.name]["s-001"] == entry.created
    assert time.time() - 120 < entry.created <= time.time()
    assert (
        state[LAST_RUN_WINDOW_END.name][""] == Window.ending(dt.datetime(2026, 11, 28, tzinfo=PARIS)).end_ts
    )
    faults(settings, mode="none")
    again = job.deliver(settings, client(settings), outbox)
    assert again.delivered == 1 and not outbox.pending()
    assert OUTBOX_PENDING.name not in outbox_state(settings)


@pytest.mark.integration
def test_a_refused_payload_is_kept_with_the_partners_reason(stack):
    settings = stack["settings"]
    bad = PartnerClient(settings.partner_url, "wrong-token", base_delay=0.01)
    stats = job.run(settings, ["s-001"], dt.datetime(2026, 11, 27, tzinfo=PARIS), bad, progress=False)
    assert (stats.delivered, stats.rejected) == (0, 1)
    (rejected,) = [r for r in Outbox(settings.data / "outbox").rejected() if r["key"] == "s-001:2026-11-27"]
    assert rejected["status"] == 401 and rejected["problem"]["title"] == "Unauthorized"
    assert (
        len(rejected["payload"]["values"]) == Window.ending(dt.datetime(2026, 11, 27, tzinfo=PARIS)).minutes
    )
    # HomewattPartnerRejected reads this until someone acts; requeue sends it again.
    assert outbox_state(settings)[OUTBOX_REJECTED.name] == {"s-001": 1.0}
    out = cli(stack["env"], "requeue", "s-001:2026-11-27")
    assert out.returncode == 0 and "s-001:2026-11-27: back in" in out.stdout, out.stdout + out.stderr
    assert OUTBOX_REJECTED.name not in outbox_state(settings)
    assert outbox_state(settings)[OUTBOX_PENDING.name] == {"s-001": 1.0}
    listing = cli(stack["env"], "outbox")
    assert listing.returncode == 0 and "1 pending" in listing.stdout and "s-001:2026-11-27" in listing.stdout
    again = job.deliver(settings, client(settings), Outbox(settings.data / "outbox"))
    assert again.delivered == 1
    assert OUTBOX_PENDING.name not in outbox_state(settings)


@pytest.mark.integration
def test_killed_between_send_and_push_then_restarted(stack):
    settings, env = stack["settings"], stack["env"]
    pushgw = settings.pushgateway_url
    requests.delete(f"{pushgw}/metrics/job/partner_job/sensor/s-006", timeout=5)
    run = ["run", "--at", "2026-11-26T00:00:00+01:00", "--no-progress"]
    # The job dies the moment it would push: after the partner answered, before the gauges.
    die_at_push = (
        "import os, sys, partner_job.job as job, partner_job.__main__ as cli; "
        "job.push_breakdown = lambda *a, **k: os._exit(17); "
        "sys.exit(cli.main(sys.argv[1:]))"
    )
    crash = cli(env, *run, code=die_at_push)
    assert crash.returncode == 17  # died after the partner answered, before pushing
    assert Outbox(settings.data / "outbox").has("s-001:2026-11-26") or Outbox(settings.data / "outbox").has(
        "s-006:2026-11-26"
    )
    done = cli(env, "deliver", "--no-progress")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 failed" in done.stdout and "breakdowns: http" in done.stdout
    assert not Outbox(settings.data / "outbox").pending()
    metrics = requests.get(f"{pushgw}/metrics", timeout=5).text
    assert 'elec_usage_share_ratio{instance="",job="partner_job",sensor="s-006"' in metrics


# --- at scale: parallel readers and senders, bounded memory -----------------------------


def fake_entries(outbox: Outbox, prefix: str, n: int, window: Window) -> list[str]:
    """n pending entries of sensors `{prefix}-000`.. with a whole window of distinct minute values."""
    keys = []
    for i in range(n):
        sensor = f"{prefix}-{i:03d}"
        values = np.random.default_rng(i).uniform(0.5, 40.0, window.minutes).round(6).tolist()
        entry = Entry(
            f"{sensor}:{window.end_date}",
            sensor,
            window.start_ts,
            window.end_ts,
            job.payload(sensor, window, values),
            created=time.time(),
        )
        outbox.put(entry)
        keys.append(entry.key)
    return keys


def partner_counts(settings) -> tuple[int, int]:
    """(requests, distinct keys answered) so far, from the reference partner's /healthz."""
    doc = requests.get(f"{settings.partner_url}/healthz", timeout=5).json()
    return doc["requests"], doc["answered"]


def forget_breakdowns(settings, sensors) -> None:
    for s in sensors:
        requests.delete(f"{settings.pushgateway_url}/metrics/job/partner_job/sensor/{s}", timeout=5)


@pytest.mark.integration
def test_a_429_with_retry_after_pauses_every_sender_and_each_entry_lands_once(stack, tmp_path):
    settings = stack["settings"]
    window = Window.ending(MIDNIGHT)
    outbox = Outbox(tmp_path / "outbox")
    keys = fake_entries(outbox, "p", 8, window)
    c = client(settings)
    seen: list[tuple[float, float, int]] = []  # (sent, answered, status), monotonic, as the job saw them

    def record(r, *args, **kwargs):
        now = time.monotonic()
        seen.append((now - r.elapsed.total_seconds(), now, r.status_code))

    c.session.hooks["response"].append(record)
    before = partner_counts(settings)
    faults(settings, mode="429", count=1, retry_after=2)
    stats = job.deliver(settings, c, outbox, workers=4)
    assert (stats.delivered, stats.failed, stats.rejected, stats.retried) == (8, 0, 0, 1)
    assert not outbox.paths() and c.gate.pauses == 1
    (told,) = [answered for _, answered, status in seen if status == 429]
    # No sender sent anything during the pause (once the answer was read: 50 ms).
    assert not [sent for sent, _, _ in seen if told + 0.05 < sent < told + 2 - 0.05]
    assert [sent for sent, _, _ in seen if sent >= told + 2 - 0.05]  # the retry, at least
    requests_, answered = partner_counts(settings)
    assert (requests_ - before[0], answered - before[1]) == (9, 8)  # 8 keys, once each, + the 429
    pushed = requests.get(f"{settings.pushgateway_url}/metrics", timeout=5).text
    assert all(f'sensor="{k.split(":")[0]}"' in pushed for k in keys)
    forget_breakdowns(settings, [k.split(":")[0] for k in keys])


@pytest.mark.integration
def test_an_outage_stops_the_round_and_keeps_every_entry(stack, tmp_path):
    """Ten thousand entries must not each spend their retries on a partner that is down."""
    settings = stack["settings"]
    window = Window.ending(MIDNIGHT)
    outbox = Outbox(tmp_path / "outbox")
    keys = fake_entries(outbox, "o", 20, window)
    faults(settings, mode="500", count=1000)
    try:
        down = job.deliver(settings, client(settings, max_attempts=2), outbox, workers=2)
    finally:
        faults(settings, mode="none")
    assert (down.delivered, down.failed) == (0, 20)
    tried = [e for e in outbox.scan() if e.attempts]
    assert 5 <= len(tried) < 20 and all(e.attempts == 2 and "500" in e.last_error for e in tried)
    assert any("not sent after 5 failures in a row" in p for p in down.problems)
    assert [e.key for e in outbox.scan()] == keys  # nothing lost, nothing set aside
    up = job.deliver(settings, client(settings), outbox, workers=2)
    assert (up.delivered, up.failed) == (20, 0) and not outbox.paths()
    forget_breakdowns(settings, [k.split(":")[0] for k in keys])


def peak_rss_mb(env: dict[str, str], *argv: str) -> float:
    """Run `python -m partner_job ARGV` in a child; its peak resident memory, in MB."""
    code = (
        "import resource, sys; from partner_job.__main__ import main; rc = main(sys.argv[1:]); "
        "print('maxrss', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(rc)"
    )
    out = cli(env, *argv, code=code)
    assert out.returncode == 0, out.stdout + out.stderr
    return int(out.stdout.split("maxrss")[-1]) / 1024


@pytest.mark.integration
def test_memory_does_not_grow_with_the_number_of_pending_payloads(stack, tmp_path):
    """Each payload is 43,200 values (~1.4 MB as Python objects): 60 held at once would be ~80 MB more."""
    settings = stack["settings"]
    window = Window.ending(MIDNIGHT)
    peaks = {}
    for n in (6, 60):
        data = tmp_path / f"data-{n}"
        keys = fake_entries(Outbox(data / "outbox"), f"m{n}", n, window)
        env = {**stack["env"], "HOMEWATT_DATA": str(data), "PARTNER_TOKEN": TOKEN}
        peaks[n] = peak_rss_mb(env, "deliver", "--no-progress")
        assert not Outbox(data / "outbox").paths()
        forget_breakdowns(settings, [k.split(":")[0] for k in keys])
    assert peaks[60] - peaks[6] < 20, peaks


@pytest.mark.integration
def test_a_sensor_that_cannot_be_read_does_not_stop_the_others(stack):
    """Read two at a time by two readers: the history refuses one sensor's query (its id is not
    valid UTF-8), the request it shared with s-006 is retried one sensor at a time."""
    settings = stack["settings"]
    at = dt.datetime(2026, 11, 25, tzinfo=PARIS)
    bad = "bad-\udcff"
    stats = job.run(
        settings,
        ["s-001", bad, "s-006"],
        at,
        client(settings),
        progress=False,
        fetch_workers=2,
        fetch_batch=2,
        send_workers=2,
    )
    assert (stats.sensors, stats.delivered, stats.failed, stats.rejected) == (2, 2, 0, 0)
    (problem,) = stats.problems
    assert problem.startswith(f"{bad}: cannot read the history")
    assert not Outbox(settings.data / "outbox").paths()


@pytest.mark.integration
def test_an_entry_written_by_the_previous_release_is_still_delivered(stack):
    """Before the outbox kept the body apart, a pending file was one gzip member: the entry's JSON."""
    settings = stack["settings"]
    window = Window.ending(dt.datetime(2026, 11, 24, tzinfo=PARIS))
    outbox = Outbox(settings.data / "outbox")
    values = fetch.minute_wh(fetch.counter_readings(settings.prometheus_url, "s-006", window))
    old = Entry(
        "s-006:2026-11-24", "s-006", window.start_ts, window.end_ts, job.payload("s-006", window, values)
    )
    (outbox.pending_dir / old.filename).write_bytes(gzip.compress(json.dumps(old.__dict__).encode()))
    assert [(e.key, e.json_bytes) for e in outbox.scan()] == [(old.key, len(old.body()))]
    stats = job.deliver(settings, client(settings), outbox)
    assert (stats.delivered, stats.failed) == (1, 0) and not outbox.paths()


# --- the outbox's layout and the senders' gate (no process) ---------------------------


def test_a_pending_file_is_one_gzip_stream_and_its_body_is_sent_as_stored(tmp_path):
    outbox = Outbox(tmp_path)
    payload = {"sensor_id": "s-1", "start": "2026-11-01T00:00:00Z", "values": [1.5, None, 2.25] * 10_000}
    entry = Entry("s-1:2026-11-30", "s-1", 0, 60, payload, created=123.5)
    path = outbox.put(entry)
    whole = json.loads(gzip.decompress(path.read_bytes()))  # what `zcat | jq` shows
    assert whole["payload"] == payload and whole["key"] == entry.key and whole["created"] == 123.5
    head = Pending.read(path)
    assert head.head_bytes < 300 < len(path.read_bytes())  # only the fields were read
    assert (head.key, head.sensor, head.created, head.json_bytes) == (
        entry.key,
        "s-1",
        123.5,
        len(entry.body()),
    )
    assert head.joules == pytest.approx(3600 * 3.75 * 10_000)
    assert head.gzip_body() == entry.gzip_body() and gzip.decompress(head.gzip_body()) == entry.body()
    outbox.keep(head, 3, "503 Service Unavailable")
    again = Pending.read(path)
    assert (again.attempts, again.last_error, again.created) == (3, "503 Service Unavailable", 123.5)
    assert again.gzip_body() == entry.gzip_body()  # the same bytes on every retry
    assert Entry.load(path).payload == payload and outbox.created(entry.key) == 123.5
    path.write_bytes(path.read_bytes()[:-5])  # torn: never sent half
    with pytest.raises(ValueError, match="not a complete outbox entry"):
        Pending.read(path).gzip_body()


def test_the_gate_holds_every_sender_then_lets_fewer_fly():
    gate = Gate(4)
    with gate.slot():
        gate.hold(0.5)  # this thread was told: it sleeps its own Retry-After, the others wait here
    assert (gate.limit, gate.pauses) == (2, 1)
    gate.hold(0.4)  # another answer of the same pause: no second halving
    assert (gate.limit, gate.pauses) == (2, 1)
    started = []

    def sender():
        with gate.slot():
            started.append(time.monotonic())
            time.sleep(0.2)

    t0 = time.monotonic()
    threads = [threading.Thread(target=sender) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert min(started) - t0 >= 0.45  # nobody before the pause's end
    assert sorted(started)[2] - min(started) >= 0.19  # two at a time after it
    for _ in range(2):
        gate.landed_one()
    assert gate.limit == 3  # one more after `limit` landed
    for _ in range(3):
        gate.landed_one()
    assert gate.limit == 4 and gate.most == 4


# --- the reference partner's rules ----------------------------------------------------


def post(
    settings,
    body: bytes,
    key: str | None = "k:1",
    token: str = TOKEN,
    gz: bool = True,
    ctype="application/json",
):
    headers = {"Authorization": f"Bearer {token}", "Content-Type": ctype}
    if key:
        headers["Idempotency-Key"] = key
    if gz:
        body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
    return requests.post(f"{settings.partner_url}/v1/breakdowns", data=body, headers=headers, timeout=30)


def good_payload(n: int = 1440, sensor: str = "x-1") -> dict:
    vals = [1.0 + (i % 60 == 0) * 30 for i in range(n)]
    return {
        "sensor_id": sensor,
        "start": "2026-11-01T00:00:00Z",
        "resolution_seconds": 60,
        "unit": "Wh",
        "values": vals,
    }


@pytest.mark.integration
def test_reference_partner_honours_the_api(stack):
    settings = stack["settings"]
    body = json.dumps(good_payload()).encode()
    first = post(settings, body, key="x-1:2026-11-02")
    assert first.status_code == 200
    ans = first.json()
    assert ans["sensor_id"] == "x-1" and ans["end"] == "2026-11-02T00:00:00Z"
    assert abs(sum(u["share"] for u in ans["usages"]) - 1) <= 0.001
    assert post(settings, body, key="x-1:2026-11-02").json() == ans  # same key, same body: same answer
    other = json.dumps({**good_payload(), "values": [2.0] * 1440}).encode()
    assert post(settings, other, key="x-1:2026-11-02").status_code == 409
    assert post(settings, body, token="nope").status_code == 401
    assert post(settings, body, key=None).status_code == 400
    assert post(settings, b"{not json", key="y").status_code == 400
    bad = post(settings, json.dumps({**good_payload(), "unit": "kWh"}).encode(), key="z")
    assert bad.status_code == 422 and bad.headers["Content-Type"] == "application/problem+json"
    assert bad.json()["detail"] == "unit must be 'Wh'"
    neg = post(settings, json.dumps({**good_payload(), "values": [1.0, -2.0]}).encode(), key="w")
    assert neg.status_code == 422 and "values[1]" in neg.json()["detail"]
    huge = post(settings, json.dumps(good_payload(n=60_000)).encode(), key="h")
    assert huge.status_code == 413


def test_reference_partner_breakdown_is_deterministic_and_finds_the_water_heater():
    from reference_partner.disaggregate import breakdown

    s = load_fleet().get("s-001")
    window = Window.ending(dt.datetime(2026, 2, 1, tzinfo=PARIS))
    minutes = window.start_ts + 60 * np.arange(window.minutes)
    power = loadmodel.power(s, np.arange(window.start_ts, window.end_ts)).reshape(-1, 60).sum(axis=1) / 3600
    values = power.tolist()
    a = breakdown(window.start_utc(), values)
    assert a == breakdown(window.start_utc(), values)
    truth = {
        k: v.sum() for k, v in loadmodel.components(s, np.arange(window.start_ts, window.end_ts)).items()
    }
    total = sum(truth.values())
    assert minutes.size == window.minutes
    assert abs(a[0]["water_heater"] - truth["water_heater"] / total) < 0.05
    assert abs(a[0]["heating"] - truth["heating"] / total) < 0.1


@pytest.mark.integration
def test_score_prints_the_error_per_usage():
    out = subprocess.run(
        [sys.executable, "-m", "reference_partner.score", "--ends", "2026-02-01"],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    ).stdout
    table = out.split("mean absolute share error per usage:")[1].split("\n")
    errors = {
        line.split()[0]: float(line.split()[-1]) for line in table if line.strip() and "all" not in line
    }
    assert set(errors) == set(loadmodel.USAGES)
    assert all(0 <= e < 0.3 for e in errors.values())
    assert "s-006" in out  # the real household is scored against its sub-meterings
