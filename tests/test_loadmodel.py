"""The load model: pure, integer, consistent, and shaped like real homes."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import numpy as np
import pytest

from homewatt import loadmodel

PARIS = zoneinfo.ZoneInfo("Europe/Paris")


def modelled(fleet):
    return [s for s in fleet.sensors if s.replay is None]


def day_seconds(year: int, month: int, day: int, tz: dt.tzinfo = dt.UTC) -> np.ndarray:
    start = dt.datetime(year, month, day, tzinfo=tz)
    end = start + dt.timedelta(days=1)
    return np.arange(int(start.timestamp()), int(end.timestamp()))


def test_power_is_a_pure_function_of_sensor_and_instant(fleet):
    s = fleet.sensors[0]
    ts = day_seconds(2026, 1, 15)
    first = loadmodel.power(s, ts)
    # Same answer again, in another order, one instant at a time, and as part of a group.
    assert np.array_equal(loadmodel.power(s, ts), first)
    perm = np.random.default_rng(7).permutation(ts.size)
    assert np.array_equal(loadmodel.power(s, ts[perm]), first[perm])
    for i in (0, 1234, 50_000, 86_399):
        assert loadmodel.power(s, [ts[i]])[0] == first[i]
    assert np.array_equal(loadmodel.power(fleet.sensors, ts)[0], first)
    # A split at an arbitrary point changes nothing (no state carried between calls).
    assert np.array_equal(np.concatenate([loadmodel.power(s, ts[:777]), loadmodel.power(s, ts[777:])]), first)


def test_power_is_integer_watts_never_negative(fleet):
    ts = np.concatenate([day_seconds(2026, 1, 15), day_seconds(2026, 7, 15)])
    p = loadmodel.power(fleet.sensors, ts)
    assert p.dtype == np.int64
    assert p.min() >= 0
    comps = loadmodel.components(fleet.sensors, ts)
    assert set(comps) == set(loadmodel.USAGES)
    assert np.array_equal(sum(comps.values()), p)
    assert all(c.min() >= 0 for c in comps.values())


def test_sensors_differ(fleet):
    ts = day_seconds(2026, 2, 1)
    p = loadmodel.power(fleet.sensors, ts)
    assert len({row.sum() for row in p}) == len(fleet)  # the replayed house included


# Daily kWh bounds for a winter and a summer day: French homes of these kinds.
@pytest.mark.parametrize(
    ("sensor_id", "winter", "summer"),
    [
        ("s-001", (20, 60), (4, 16)),  # flat, electric convectors, water heater
        ("s-002", (25, 75), (8, 30)),  # family house, heat pump
        ("s-003", (2, 9), (2, 9)),  # studio on gas
        ("s-004", (50, 130), (8, 30)),  # leaky house, convectors
        ("s-005", (8, 30), (4, 12)),  # heat pump flat, no water heater
    ],
)
def test_daily_energy_is_plausible(fleet, sensor_id, winter, summer):
    s = fleet.get(sensor_id)
    kwh_winter = loadmodel.power(s, day_seconds(2026, 1, 20)).sum() / 3.6e6
    kwh_summer = loadmodel.power(s, day_seconds(2026, 7, 20)).sum() / 3.6e6
    assert winter[0] <= kwh_winter <= winter[1]
    assert summer[0] <= kwh_summer <= summer[1]


def test_fridge_cycles(fleet):
    for s in modelled(fleet):
        fridge = loadmodel.components(s, day_seconds(2026, 5, 3))["fridge"][0]
        on = fridge > 0
        starts = np.count_nonzero(on[1:] & ~on[:-1])
        assert 18 <= starts <= 40, (s.id, starts)  # a compressor cycle every 40-60 min
        duty = on.mean()
        assert 0.2 <= duty <= 0.5, (s.id, duty)


@pytest.mark.parametrize("date", [dt.date(2026, 1, 10), dt.date(2026, 7, 10)])  # CET and CEST
def test_water_heater_runs_off_peak_only(fleet, date):
    ts = day_seconds(date.year, date.month, date.day, PARIS)
    ts = np.arange(ts[0] - 86400, ts[-1] + 1)  # two local days
    local_hour = np.array([dt.datetime.fromtimestamp(t, PARIS).hour for t in ts[::60]])
    for s in modelled(fleet):
        wh = loadmodel.components(s, ts)["water_heater"][0][::60]
        if s.water_heater is None:
            assert not wh.any()
            continue
        on_hours = set(local_hour[wh > 0])
        assert on_hours, s.id
        assert on_hours <= {22, 23, 0, 1, 2, 3, 4, 5}, (s.id, sorted(on_hours))
        assert wh.max() == s.water_heater.power_w


def test_heating_follows_the_season(fleet):
    for s in modelled(fleet):
        winter = loadmodel.components(s, day_seconds(2026, 1, 20))["heating"].sum()
        summer = loadmodel.components(s, day_seconds(2026, 7, 20))["heating"].sum()
        assert summer == 0
        assert (winter > 0) == (s.heating.type != "none")


def test_lighting_only_in_the_dark(fleet):
    s = fleet.sensors[1]
    ts = day_seconds(2026, 6, 21, PARIS)
    light = loadmodel.components(s, ts)["lighting"][0]
    hours = np.array([dt.datetime.fromtimestamp(t, PARIS).hour for t in ts])
    assert light[(hours >= 10) & (hours < 21)].sum() == 0  # long June days
    assert light.sum() > 0
