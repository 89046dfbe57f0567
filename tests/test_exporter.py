"""The exporter serves the model's values for the current second, fast and never wrong."""

from __future__ import annotations

import dataclasses
import datetime as dt
import gzip
import hashlib
import json
import subprocess
import sys
import threading
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from benchmarks._fleets import big_fleet
from devices import mqtt, shelly, tasmota, tic
from devices.hub import Devices
from devices.reading import Rejected
from exporter import gzipped
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


# --- the exporter at scale: the same text, faster -------------------------------------------

T0 = int(dt.datetime(2026, 5, 2, 8, 0, tzinfo=dt.UTC).timestamp())
# sha256 of `scenario()`'s text as the exporter rendered it before issue 14's optimisations
# (one string per render, no cache, no template): the text must not have changed by a byte.
BEFORE = "a585ee1078487beda88ef8fbc9d53cd4c658d8cfcff683ea995e7f02713d557f"


def feed(devices: Devices, k: int, t: int, parsers: dict[str, Any]) -> None:
    """Second `k`'s messages, decoded by the real parsers: good ones, bad ones (rejected),
    devices never heard and devices heard once only."""
    for i, (sensor, st) in enumerate(zip(devices.sensors, devices.states, strict=True)):
        d = sensor.device
        assert d is not None
        if i % 13 == 5 or (k and i % 7 == 3):
            continue
        w, wh = 100.0 + 7 * i + 0.25 * k, 1000.0 + 3.5 * i + 0.125 * k
        if d.format == "tic":
            decoder = parsers.setdefault(sensor.id, tic.TicDecoder(d.mode))
            if d.mode == "standard":
                frame = tic.standard_frame(
                    adsc="012345678901", sinsts_va=int(w), east_wh=int(wh) + 30 * k, t=t - 5
                )
            else:
                frame = tic.historic_frame(
                    adco="012345678901", papp_va=int(w) // 10 * 10, index_wh=int(wh) + 30 * k
                )
            data = frame + frame + (frame[:40] + b"\x02garbage\x03" if i % 3 == 0 else b"")
            for item in decoder.feed(data):
                st.reject(item) if isinstance(item, Rejected) else st.offer(item)
            continue
        if d.format == "shelly":
            status = shelly.status(d.component, power_w=w, energy_wh=wh, t=t)
            msgs = [(f"{d.topic}/status/{name}", json.dumps(body).encode()) for name, body in status.items()]
            if i % 5 == 0:
                msgs += [(f"{d.topic}/status/{d.component}", p) for p in (b"{not json", b'{"apower": NaN}')]
        else:
            doc = tasmota.sensor_message(
                power_w=w, total_kwh=round(wh / 1000, 3), t=t - 30, apparent_va=w + 20 if i % 2 else None
            )
            msgs = [(f"tele/{d.topic}/SENSOR", json.dumps(doc).encode())]
        parse = parsers.setdefault(sensor.id, mqtt.parser(sensor)[1])
        for topic, payload in msgs:
            try:
                reading = parse(topic, payload)
            except Rejected as exc:
                st.reject(exc)
                continue
            if reading is not None:
                st.offer(reading)


def scenario(data: Path) -> list[str]:
    """Six renders of 20 modelled sensors and 40 devices of every kind (benchmarks/_fleets.py):
    NaN and negative model values, stale and never-heard devices, rejections, sources
    going up and down, so that every cached part is rendered again at some point."""
    sensors = big_fleet(60, dt.date(2026, 5, 1), 40)
    modelled = [s for s in sensors if s.device is None]
    now = [float(T0)]
    devices = Devices([s for s in sensors if s.device], data, clock=lambda: now[0])
    r = FleetRenderer(
        [s.id for s in modelled],
        [s.id for s in devices.sensors],
        devices.info,
        [s.name for s in devices.sources],
    )
    parsers: dict[str, Any] = {}
    texts = []
    for k in range(6):
        t = T0 + k
        now[0] = t + 0.25
        feed(devices, k, t, parsers)
        for j, source in enumerate(devices.sources):
            source.up = (j + k) % 3 != 0
        if k == 3:
            now[0] = t + 11.5  # what was fed before k = 3 only is stale now
        p = (np.arange(len(modelled), dtype=np.int64) * 37 + 11 * k) % 9000
        e = 10**9 + np.arange(len(modelled), dtype=np.int64) * 123_457 + 1000 * k
        if k == 2:
            p, e = p.astype(float), e.astype(float)
            p[3], e[5] = np.nan, -1.0
        texts.append(r.render(p, e, devices.snapshot(now[0])))
        texts.append(f"skipped {r.skipped}\n")
    return texts


def test_the_text_with_devices_is_byte_for_byte_what_it_was(tmp_path):
    texts = scenario(tmp_path)
    assert hashlib.sha256("".join(texts).encode()).hexdigest() == BEFORE
    for text in texts[::2]:  # and every render is valid exposition, one block per family
        families = [f.name for f in text_string_to_metric_families(text)]
        assert len(families) == len(set(families))
    assert "skipped 2\n" in texts


def test_each_scrape_serves_its_own_second_though_the_next_is_computed_ahead(fleet):
    sensors = tuple(dataclasses.replace(s, index_date=dt.date(2026, 5, 1)) for s in fleet.modelled)
    app = MetricsApp(LiveFleet(sensors), clock=lambda: T0 + 0.5)
    reference = FleetRenderer([s.id for s in sensors])
    ledger = Ledger(sensors)

    def expected(t: int) -> str:
        return reference.render(loadmodel.power(sensors, [t])[:, 0], counter(ledger, [t])[:, 0])

    assert app.body(T0 + 0.5) == expected(T0)
    app.ahead.prepare(T0 + 1)
    app.ahead.prepare(T0 + 2)
    app.ahead.get(T0 + 2)  # two ahead: the model is now at T0 + 2
    assert app.body(T0 + 0.99) == expected(T0)  # a late scrape of T0 still gets T0
    assert app.body(T0 + 1.2) == expected(T0 + 1)
    assert app.body(T0 + 2.2) == expected(T0 + 2)
    assert app.body(T0 + 3.2) == expected(T0 + 3)  # not ready: computed by the scrape itself


class CountingFleet(LiveFleet):
    """A LiveFleet that records which seconds the model computed, in order."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.computed: list[int] = []

    def at(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        self.computed.append(t)
        return super().at(t)


@pytest.mark.parametrize(
    ("phase", "ahead"),
    [(0.5, [1]), (0.02, [1]), (0.95, [1, 2])],
    ids=["mid-second", "just-after-a-boundary", "just-before-a-boundary"],
)
def test_a_scrape_near_a_seconds_end_has_both_next_seconds_computed_ahead(fleet, phase, ahead):
    """The next scrape comes a little early or late: near a boundary it may ask for either second,
    and neither may be left for the scrape to compute while Prometheus waits."""
    sensors = tuple(dataclasses.replace(s, index_date=dt.date(2026, 5, 1)) for s in fleet.modelled)
    live = CountingFleet(sensors)
    app = MetricsApp(live, clock=lambda: T0 + phase)
    app.body(T0 + phase)
    app.ahead.prepare_next(T0 + phase)
    app.ahead._pool.shutdown(wait=True)  # the background work done
    assert live.computed == [T0] + [T0 + k for k in ahead]
    reference, ledger = FleetRenderer([s.id for s in sensors]), Ledger(sensors)
    for late in (-0.08, 0.0, 0.08):  # the next scrape, early, on time or late: its second is ready
        t = int(T0 + phase + 1 + late)
        expected = reference.render(loadmodel.power(sensors, [t])[:, 0], counter(ledger, [t])[:, 0])
        assert app.body(T0 + phase + 1 + late) == expected
    assert live.computed == [T0] + [T0 + k for k in ahead]  # none of them stepped the model


def test_gzip_when_asked_is_one_member_of_the_same_text(fleet):
    sensors = tuple(dataclasses.replace(s, index_date=dt.date(2026, 5, 1)) for s in fleet.sensors)
    now = T0 + 0.7
    app = MetricsApp(LiveFleet(sensors), Devices(fleet.devices, Path("/nonexistent")), clock=lambda: now)
    port = free_port()
    server = serve(app, "127.0.0.1", port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        zipped = requests.get(url, headers={"Accept-Encoding": "gzip"}, timeout=10, stream=True)
        raw = zipped.raw.read(decode_content=False)
        plain = requests.get(url, headers={"Accept-Encoding": "identity"}, timeout=10)
    finally:
        server.shutdown()
        server.server_close()
    assert zipped.headers["Content-Encoding"] == "gzip" and "Content-Encoding" not in plain.headers
    assert zipped.headers["Vary"] == "Accept-Encoding"
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)  # a gzip member, not several
    text = inflate.decompress(raw)
    assert inflate.eof and inflate.unused_data == b""
    fleet_part = app.body(now).encode()
    assert text.startswith(fleet_part) and plain.content.startswith(fleet_part)
    assert b'homewatt_device_info{sensor="s-007",format="shelly"' in fleet_part


def test_parts_compressed_apart_make_one_gzip_member():
    text = b"".join(
        f'elec_power_watts{{sensor="s-{i:04d}"}} {i * 37 % 9000}\n'.encode() for i in range(20_000)
    )
    pieces: list[gzipped.Part | bytes] = [
        text[:10],
        gzipped.Part(text[10:300_000]),
        b"",
        gzipped.Part(b""),
        text[300_000:400_000],
        text[400_000:500_000],
        gzipped.Part(text[500_000:]),
    ]
    member = gzipped.member(pieces)
    assert gzip.decompress(member) == gzipped.plain(pieces) == text
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
    assert inflate.decompress(member) == text and inflate.eof and inflate.unused_data == b""
    assert len(member) < 1.1 * len(gzip.compress(text, gzipped.LEVEL))
