"""Integration: real Prometheus scraping the real exporter every second, rules evaluated."""

from __future__ import annotations

import functools
import subprocess
import time

import numpy as np
import pytest

from homewatt import loadmodel, promapi, promconfig
from homewatt.config import REPO
from homewatt.meter import Ledger, counter

from .conftest import assert_each_second_once, metered_second

pytestmark = pytest.mark.integration


def raw_samples(prom: str, expr: str, at: float) -> dict[str, list[tuple[float, float]]]:
    """{sensor: [(ts, value), ...]} of a range-vector selector evaluated at `at`."""
    data = promapi.query(prom, expr, at=at)
    return {r["metric"]["sensor"]: [(float(t), float(v)) for t, v in r["values"]] for r in data}


def sensor_counter(ledger: Ledger, i: int, seconds: np.ndarray) -> np.ndarray:
    """The i-th sensor's energy counter at each of `seconds`."""
    return counter(ledger, seconds)[i]


def test_rendered_config_passes_promtool(tmp_path):
    path = promconfig.write(
        tmp_path / "prometheus.yml", {"exporter": "127.0.0.1:1", "pushgateway": "127.0.0.1:2"}
    )
    out = subprocess.run(["promtool", "check", "config", str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    every = sorted((REPO / "rules").glob("*.rules.yml"))
    assert f"SUCCESS: {len(every)} rule files found" in out.stdout
    assert "SUCCESS: 2 rules found" in out.stdout  # the 1m pair
    assert "SUCCESS: 4 rules found" in out.stdout  # the 15m pair and the counter's two readings
    # Under Thanos, Prometheus runs the 1m file and the alerts it can evaluate (the Ruler the
    # 15m one and the alert that needs weeks of history).
    path = promconfig.write(tmp_path / "thanos.yml", {}, rule_files=promconfig.PROMETHEUS_RULES)
    out = subprocess.run(["promtool", "check", "config", str(path)], capture_output=True, text=True)
    assert f"SUCCESS: {len(promconfig.PROMETHEUS_RULES)} rule files found" in out.stdout
    assert "homewatt-1m.rules.yml" in out.stdout and "homewatt-15m.rules.yml" not in out.stdout


def test_live_samples_equal_the_model_at_their_timestamps(live_stack):
    fleet = live_stack.fleet
    live_stack.wait_for("elec_power_watts", len(fleet), timeout=60)
    time.sleep(12)  # let a few seconds of samples accumulate
    now = time.time()
    power = raw_samples(live_stack.prom, "elec_power_watts[10s]", now)
    energy = raw_samples(live_stack.prom, "elec_energy_joules_total[10s]", now)
    assert set(power) == set(fleet.ids()) == set(energy)
    ledger = Ledger(fleet.sensors)
    for i, s in enumerate(fleet.sensors):
        ts = np.array([t for t, _ in power[s.id]])
        values = np.array([v for _, v in power[s.id]])
        assert len(ts) >= 9, f"{s.id}: only {len(ts)} samples in 10 s at a 1 s scrape"
        assert now - ts.max() <= 2.0, "the newest sample is at most 2 s old"
        assert [t for t, _ in energy[s.id]] == list(ts), "both families come from the same scrapes"
        joules = np.array([v for _, v in energy[s.id]])
        secs = metered_second(ts, joules, functools.partial(sensor_counter, ledger, i))
        assert_each_second_once(ts, secs)
        assert list(values) == list(loadmodel.power(s, secs).astype(float)), "power of the same second"


def test_series_carry_stable_labels(live_stack):
    got = live_stack.wait_for("elec_power_watts", len(live_stack.fleet), timeout=60)
    for r in got:
        assert r["metric"]["job"] == "homewatt-exporter"
        assert r["metric"]["instance"] == "homewatt-exporter"


def prometheus_increase(ts: np.ndarray, values: np.ndarray, start: float, end: float) -> float:
    """increase() as Prometheus 2.42 computes it (extrapolatedRate, no counter reset).

    Like Prometheus, durations are differences of integer milliseconds: the same
    differences of float seconds near 1.8e9 lose ~1e-7 s, about 2e-9 of a minute.
    """
    ms = np.round(np.asarray(ts) * 1000).astype(np.int64)
    start_ms, end_ms = round(start * 1000), round(end * 1000)
    delta = values[-1] - values[0]
    sampled = float(ms[-1] - ms[0]) / 1000
    average = sampled / (len(ms) - 1)
    to_start, to_end = float(ms[0] - start_ms) / 1000, float(end_ms - ms[-1]) / 1000
    if delta > 0 and values[0] >= 0:
        to_start = min(to_start, sampled * (values[0] / delta))
    interval = sampled
    interval += to_start if to_start < 1.1 * average else average / 2
    interval += to_end if to_end < 1.1 * average else average / 2
    return float(delta * (interval / sampled))


def test_one_minute_rules_match_the_model(live_stack):
    fleet = live_stack.fleet
    prom = live_stack.prom
    # The second evaluation is the first whose whole window follows the exporter's start.
    expr = "count_over_time(sensor:elec_energy_joules:increase1m[10m]) >= 2"
    live_stack.wait_for(expr, len(fleet), timeout=200)
    inc = promapi.query(prom, "sensor:elec_energy_joules:increase1m")
    avg = promapi.query(prom, "sensor:elec_power_watts:avg1m")
    assert {r["metric"]["sensor"] for r in inc} == set(fleet.ids()) == {r["metric"]["sensor"] for r in avg}
    assert all(set(r["metric"]) == {"__name__", "sensor"} for r in inc + avg)
    # The recorded sample's timestamp is the evaluation instant T; its window is (T-60 s, T].
    stamped = promapi.query(prom, "timestamp(sensor:elec_energy_joules:increase1m)")
    evaluated = {r["metric"]["sensor"]: float(r["value"][1]) for r in stamped}
    ledger = Ledger(fleet.sensors)
    for i, s in enumerate(fleet.sensors):
        T = evaluated[s.id]
        rec_inc = promapi.by_label(promapi.query(prom, "sensor:elec_energy_joules:increase1m", at=T))[s.id]
        rec_avg = promapi.by_label(promapi.query(prom, "sensor:elec_power_watts:avg1m", at=T))[s.id]
        seen = raw_samples(prom, f'elec_energy_joules_total{{sensor="{s.id}"}}[1m]', T)[s.id]
        ts = np.array([t for t, _ in seen])
        secs = metered_second(
            ts, np.array([v for _, v in seen]), functools.partial(sensor_counter, ledger, i)
        )
        assert len(secs) >= 58, f"{s.id}: {len(secs)} samples in a 1 s-scraped minute"
        # Mean power over the samples in the window, as the model gives them.
        assert rec_avg == pytest.approx(loadmodel.power(s, secs).mean(), rel=1e-9)
        # Energy: increase() over the model's counter at those instants ...
        joules = counter(ledger, secs)[i]
        assert rec_inc == pytest.approx(prometheus_increase(ts, joules, T - 60, T), rel=1e-9)
        # ... which is the true energy of the metered minute up to about one
        # extrapolated second.  (A sample scraped at x.87 s carries second x.)
        true = loadmodel.power(s, np.arange(secs[0], secs[-1] + 1)).sum()
        peak = loadmodel.power(s, np.arange(secs[0] - 1, secs[-1] + 2)).max()
        assert abs(rec_inc - true) <= 2 * peak, (s.id, T, secs[0], secs[-1], rec_inc, true)
