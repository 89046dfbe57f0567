"""The daily reading: local midnights, the generated rule and its tests, and what the backfill writes."""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo

import numpy as np

from backfill import generate
from homewatt import localday
from homewatt.contract import QUARTER_STREAM, READING1D, READING15M
from homewatt.fleet import load_fleet

PARIS = zoneinfo.ZoneInfo("Europe/Paris")


def ts(text: str) -> int:
    return int(dt.datetime.fromisoformat(text).timestamp())


def test_the_committed_rule_and_its_promtool_tests_are_what_the_generator_writes():
    text = localday.RULE_FILE.read_text()
    assert localday.render_rules(text) == text, f"{localday.RULE_FILE} is stale: run `make generate`"
    committed = {p.name for p in localday.TESTS_DIR.glob(f"{localday.TEST_PREFIX}*.test.yml")}
    assert committed == {localday.file_name(c) for c in localday.CASES}
    for case in localday.CASES:
        path = localday.TESTS_DIR / localday.file_name(case)
        assert path.read_text() == localday.render_test(case), f"{path} is stale: run `make generate`"


def test_the_rules_utc_offset_is_zoneinfos_over_its_span():
    """The generated terms, added up as PromQL does, give zoneinfo's offset at every hour of
    the span and a second either side of every change."""
    expr = localday.offset_expr()
    first = int(re.match(r"\(\s*(\d+)", expr)[1])  # type: ignore[index]
    terms = [
        (int(at), int(size) * (1 if sign == "+" else -1))
        for sign, size, at in re.findall(r"([+-]) (\d+) \* \(time\(\) >= bool (\d+)\)", expr)
    ]
    start, end = localday.span()
    assert (dt.datetime.fromtimestamp(start, PARIS).year, dt.datetime.fromtimestamp(end, PARIS).year) == (
        localday.FIRST_YEAR,
        localday.END_YEAR,
    )
    assert len(terms) == 2 * (localday.END_YEAR - localday.FIRST_YEAR)  # two changes a year in Paris
    checks = list(range(start, end, 3600)) + [at + d for at, _ in terms for d in (-1, 0, 1)]
    for t in checks:
        got = first + sum(size for at, size in terms if t >= at)
        assert got == dt.datetime.fromtimestamp(t, PARIS).utcoffset().total_seconds()  # type: ignore[union-attr]


def test_local_midnights_make_23_and_25_hour_days():
    got = localday.midnights(ts("2026-03-28T12:00:00+01:00"), ts("2026-03-31T00:00:00+02:00") + 1)
    assert list(np.diff(got)) == [23 * 3600, 24 * 3600]
    assert got[0] == ts("2026-03-29T00:00:00+01:00")
    got = localday.midnights(ts("2026-10-25T00:00:00+02:00"), ts("2026-10-27T00:00:00+01:00") + 1)
    assert list(np.diff(got)) == [25 * 3600, 24 * 3600]
    quarters = np.arange(ts("2026-10-24T00:15:00+02:00"), ts("2026-10-27T00:00:00+01:00"), 900)
    assert list(quarters[localday.at_midnight(quarters)]) == list(got[:2])


def samples(text: bytes, name: str) -> dict[str, dict[int, int]]:
    """{sensor: {ts: value}} of one series family in the backfill's OpenMetrics text."""
    out: dict[str, dict[int, int]] = {}
    for m in re.finditer(rf'^{re.escape(name)}\{{sensor="([^"]+)"\}} (\d+) (\d+)$', text.decode(), re.M):
        out.setdefault(m[1], {})[int(m[3])] = int(m[2])
    return out


def test_the_backfill_writes_the_counter_at_each_local_midnight():
    """Both kinds of chunk: the daily reading is the quarter-hour reading at local midnights,
    on both sides of the 25 h day of 2026-10-25."""
    sensors = load_fleet().sensors[:2]
    start, end = ts("2026-10-24T22:00:00+02:00"), ts("2026-10-26T02:00:00+01:00")
    texts, _, _ = generate.raw_chunk(sensors, start, end, np.array([10**9, 2 * 10**9]), start, start)
    quarter = texts[QUARTER_STREAM]
    expect = [ts("2026-10-25T00:00:00+02:00"), ts("2026-10-26T00:00:00+01:00")]
    daily, readings = samples(quarter, READING1D.name), samples(quarter, READING15M.name)
    assert set(daily) == {s.id for s in sensors}
    for sensor, got in daily.items():
        assert sorted(got) == expect
        assert all(got[t] == readings[sensor][t] for t in expect)
    # The history: given counters at each quarter-hour, the midnights' are repeated as daily readings.
    quarters = np.arange(ts("2026-03-28T12:00:00+01:00"), ts("2026-03-30T12:00:00+02:00"), 900)
    counters = np.vstack([np.arange(quarters.size) * 1000, np.arange(quarters.size) * 7]).astype(np.int64)
    history, _ = generate.history_chunk(sensors, quarters, counters, counters)
    daily = samples(history[QUARTER_STREAM], READING1D.name)
    midnights = [ts("2026-03-29T00:00:00+01:00"), ts("2026-03-30T00:00:00+02:00")]
    for i, s in enumerate(sensors):
        assert daily[s.id] == {t: int(counters[i, (t - quarters[0]) // 900]) for t in midnights}
