"""The energy counter is the exact running sum of the power, in integer joules."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pytest

from homewatt import loadmodel
from homewatt.meter import Ledger, counter


@pytest.fixture
def sensors(fleet):
    # Anchor a few days back so the tests cross the anchor and several UTC days cheaply.
    return tuple(dataclasses.replace(s, index_date=dt.date(2026, 3, 27)) for s in fleet.sensors[:2])


def midnight(d: dt.date) -> int:
    return int(dt.datetime(d.year, d.month, d.day, tzinfo=dt.UTC).timestamp())


def test_counter_equals_index_at_the_anchor(sensors):
    ledger = Ledger(sensors)
    got = counter(ledger, [midnight(dt.date(2026, 3, 27))])[:, 0]
    assert list(got) == [s.index_joules for s in sensors]


@pytest.mark.parametrize(
    ("t0", "t1"),
    [
        (midnight(dt.date(2026, 3, 27)) + 5, midnight(dt.date(2026, 3, 27)) + 3605),  # within a day
        (midnight(dt.date(2026, 3, 27)) + 80_000, midnight(dt.date(2026, 3, 29)) + 7_000),  # across DST night
        (midnight(dt.date(2026, 3, 25)) + 123, midnight(dt.date(2026, 3, 28)) + 17),  # across the anchor
    ],
)
def test_counter_difference_is_the_sum_of_power(sensors, t0, t1):
    ledger = Ledger(sensors)
    c = counter(ledger, [t0, t1])
    exact = loadmodel.power(sensors, np.arange(t0, t1)).sum(axis=1)
    assert list(c[:, 1] - c[:, 0]) == list(exact)
    assert c.dtype == np.int64


def test_counter_steps_by_the_power_of_each_second(sensors):
    t0 = midnight(dt.date(2026, 3, 28)) - 30
    ts = np.arange(t0, t0 + 60)  # crosses a UTC midnight
    c = counter(Ledger(sensors), ts)
    assert np.array_equal(np.diff(c, axis=1), loadmodel.power(sensors, ts[:-1]))


def test_ledger_cache_round_trip(sensors, tmp_path):
    day = midnight(dt.date(2026, 3, 28)) // 86400
    first = Ledger(sensors, tmp_path)
    expected = first.day_energy(day)
    first.save()
    assert len(list(tmp_path.glob("*.json"))) == len(sensors)
    again = Ledger(sensors, tmp_path)
    assert np.array_equal(again.at_midnight(day + 1), first.at_midnight(day + 1))
    assert np.array_equal(again.day_energy(day), expected)
    # A damaged cache file is ignored and recomputed, not trusted.
    for f in tmp_path.glob("*.json"):
        f.write_text("{not json")
    assert np.array_equal(Ledger(sensors, tmp_path).day_energy(day), expected)


def test_counter_refuses_to_go_negative(sensors):
    tiny = tuple(dataclasses.replace(s, index_kwh=1.0) for s in sensors)
    with pytest.raises(ValueError, match="too small"):
        counter(Ledger(tiny), [midnight(dt.date(2026, 3, 20))])
