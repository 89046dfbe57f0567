"""The exporter serves the model's values for the current second, fast and never wrong."""

from __future__ import annotations

import dataclasses
import datetime as dt
import subprocess
import sys
import threading

import numpy as np
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from exporter.render import FleetRenderer
from exporter.server import MetricsApp, serve
from homewatt import loadmodel
from homewatt.live import LiveFleet
from homewatt.meter import Ledger, counter
from homewatt.procs import free_port


def parse(text: str) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if "sensor" in s.labels:
                assert s.timestamp is None  # Prometheus stamps at scrape: staleness works
                out.setdefault(s.name, {})[s.labels["sensor"]] = s.value
    return out


def test_render_is_valid_exposition():
    r = FleetRenderer(["s-1", "s-2"])
    text = r.render(np.array([1500, 0]), np.array([10**11, 42]))
    got = parse(text)
    assert got["elec_power_watts"] == {"s-1": 1500, "s-2": 0}
    assert got["elec_energy_joules_total"]["s-1"] == 1e11
    assert "# TYPE elec_energy_joules_total counter" in text
    assert "# TYPE elec_power_watts gauge" in text


def test_render_leaves_out_nan_and_negative_values():
    r = FleetRenderer(["a", "b", "c"])
    text = r.render(np.array([np.nan, -5.0, 230.0]), np.array([1.0, 2.0, np.nan]))
    got = parse(text)
    assert got["elec_power_watts"] == {"c": 230.0}
    assert set(got["elec_energy_joules_total"]) == {"a", "b"}
    assert "nan" not in text.lower()


def test_device_sensors_follow_the_modelled_ones_in_each_family():
    """One block per family (the text format wants them together), a stale device left out
    of every value family but its last-seen time and rejection counts still served."""
    from devices.reading import REASONS

    r = FleetRenderer(
        ["s-1"],
        ["m-1", "m-2"],
        [("m-1", "shelly", "mqtt://127.0.0.1:1883"), ("m-2", "tic", "tic:tic/m-2")],
        ["mqtt://127.0.0.1:1883", "tic:tic/m-2"],
    )
    rejected = np.zeros((2, len(REASONS)), dtype=np.int64)
    rejected[1, REASONS.index("checksum")] = 7
    devices = {
        "power": np.array([812.0, np.nan]),  # m-2 is stale
        "energy": np.array([5400.9, np.nan]),
        "apparent": np.array([np.nan, np.nan]),  # a Shelly reports no VA
        "last_seen": np.array([1_790_000_000.5, 1_789_999_900.0]),
        "rejected": rejected,
        "source_up": np.array([1.0, 0.0]),  # the TIC port is closed
    }
    text = r.render(np.array([100]), np.array([10**9]), devices)
    got = parse(text)
    assert got["elec_power_watts"] == {"s-1": 100, "m-1": 812.0}
    assert got["elec_energy_joules_total"] == {"s-1": 1e9, "m-1": 5400.9}
    assert "elec_apparent_power_voltamperes" not in got
    assert got["homewatt_device_last_seen_timestamp_seconds"] == {
        "m-1": 1_790_000_000.5,
        "m-2": 1_789_999_900.0,
    }
    assert text.count('homewatt_device_rejected_total{sensor="m-2"') == len(REASONS)
    assert 'homewatt_device_rejected_total{sensor="m-2",reason="checksum"} 7\n' in text
    assert 'homewatt_device_info{sensor="m-2",format="tic",source="tic:tic/m-2"} 1\n' in text
    assert 'homewatt_device_source_up{source="mqtt://127.0.0.1:1883"} 1.0\n' in text
    assert 'homewatt_device_source_up{source="tic:tic/m-2"} 0.0\n' in text
    assert r.skipped == 0  # a stale device is not a skipped sample: its last-seen time says why
    for family in ("elec_power_watts", "elec_energy_joules_total", "homewatt_device_rejected_total"):
        assert text.count(f"# TYPE {family} ") == 1


def test_live_values_equal_the_model_as_seconds_pass(fleet):
    sensors = tuple(dataclasses.replace(s, index_date=dt.date(2026, 5, 1)) for s in fleet.sensors)
    live = LiveFleet(sensors, Ledger(sensors))
    t0 = int(dt.datetime(2026, 5, 1, 23, 59, 50, tzinfo=dt.UTC).timestamp())
    reference = Ledger(sensors)
    # Consecutive seconds, a skipped stretch, the same second twice, and a jump back.
    for t in (t0, t0 + 1, t0 + 2, t0 + 40, t0 + 40, t0 + 700, t0 + 3):
        power, energy = live.at(t)
        assert list(power) == list(loadmodel.power(sensors, [t])[:, 0])
        assert list(energy) == list(counter(reference, [t])[:, 0])


def test_http_endpoint_serves_the_current_second(fleet):
    sensors = tuple(dataclasses.replace(s, index_date=dt.date(2026, 5, 1)) for s in fleet.sensors)
    now = int(dt.datetime(2026, 5, 2, 8, 0, tzinfo=dt.UTC).timestamp())
    app = MetricsApp(LiveFleet(sensors), clock=lambda: now + 0.7)
    port = free_port()
    server = serve(app, "127.0.0.1", port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        r = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
        assert r.status_code == 200
        assert r.headers["Content-Type"].startswith("text/plain")
        got = parse(r.text)
        model = loadmodel.power(sensors, [now])[:, 0]
        assert got["elec_power_watts"] == {s.id: float(w) for s, w in zip(sensors, model, strict=True)}
        assert "homewatt_exporter_render_seconds" in r.text
        assert requests.get(f"http://127.0.0.1:{port}/nope", timeout=5).status_code == 404
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.integration
def test_exporter_refuses_a_bad_fleet(tmp_path):
    bad = tmp_path / "fleet.yaml"
    bad.write_text(
        "timezone: Europe/Paris\nsensors:\n"
        "  - {id: s-1, home: a, seed: 1, index_date: 2026-01-01, index_kwh: 10}\n"
        "  - {id: s-1, home: b, seed: 2, index_date: 2026-01-01, index_kwh: 10}\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "exporter", "--fleet", str(bad), "--listen", f"127.0.0.1:{free_port()}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "duplicate sensor id 's-1'" in proc.stderr
    assert "sensors[1]" in proc.stderr
