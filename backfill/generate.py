"""The series the backfill writes, computed from the load model and written as OpenMetrics.

Everything is derived from the per-second power of the one shared model, in
integer joules, so backfilled values equal what the exporter serves live:
the counter at second t is the exact sum of power before t, a minute's
energy is counter(T) - counter(T - 60 s) on the calendar, and mean power is
that energy over the window's length.  The recorded series mean what the rules
in rules/ compute live; the backfill places them on calendar boundaries
(a rule group's own samples sit at its hash offset), with each sample at T
covering [T - window, T).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from backfill.openmetrics import EOF_MARK, family_header, series_lines
from homewatt import loadmodel
from homewatt.fleet import Sensor
from homewatt.streams import QUARTER, RAW

POWER = "elec_power_watts"
ENERGY = "elec_energy_joules"  # OpenMetrics family name; samples carry _total
AVG1M = "sensor:elec_power_watts:avg1m"
INC1M = "sensor:elec_energy_joules:increase1m"
AVG15M = "sensor:elec_power_watts:avg15m"
INC15M = "sensor:elec_energy_joules:increase15m"

# The live series' labels (prometheus.yml pins instance), so history and live are one series.
RAW_LABELS = 'job="homewatt-exporter",instance="homewatt-exporter",'

HELP = {
    POWER: ("gauge", "Active power drawn by the home, in watts."),
    ENERGY: ("counter", "Energy used since the meter's start (its index), in joules."),
    AVG1M: ("gauge", "Mean power over the minute before the sample, W."),
    INC1M: ("gauge", "Energy used in the minute before the sample, J."),
    AVG15M: ("gauge", "Mean power over the quarter-hour before the sample, W."),
    INC15M: ("gauge", "Energy used in the quarter-hour before the sample, J."),
}

# Mean power is energy / window; with 3 decimals it is exact for a 1 s meter over
# 60 s (multiples of 1/60 W would need more) to within 0.0005 W.
AVG_SCALE = 3


@dataclass
class Family:
    name: str
    lines: list[bytes]
    samples: int = 0

    def add(self, prefix: str, values: np.ndarray, ts: np.ndarray, scale: int = 0) -> None:
        self.lines.append(series_lines(prefix, values, ts, scale))
        self.samples += int(values.size)


def _families(*names: str) -> dict[str, Family]:
    return {n: Family(n, []) for n in names}


def _render(families: dict[str, Family]) -> tuple[bytes, int]:
    parts = []
    total = 0
    for fam in families.values():
        if not fam.samples:
            continue
        kind, text = HELP[fam.name]
        parts.append(family_header(fam.name, kind, text))
        parts.extend(fam.lines)
        total += fam.samples
    parts.append(EOF_MARK)
    return b"".join(parts), total


def _streams(streams: dict[str, dict[str, Family]]) -> tuple[dict[str, bytes], int]:
    """One OpenMetrics text per block stream that has samples, and their total count."""
    texts: dict[str, bytes] = {}
    total = 0
    for name, fams in streams.items():
        text, n = _render(fams)
        if n:
            texts[name] = text
            total += n
    return texts, total


def _window_aggregates(
    fams: dict[str, Family],
    label: str,
    counter_at: np.ndarray,
    first: int,
    width: int,
    avg_name: str,
    inc_name: str,
    ends: np.ndarray,
) -> None:
    """Energy and mean power for windows [T - width, T), T in `ends` (aligned instants).

    `counter_at[i]` is the counter at second `first + i`.
    """
    if ends.size == 0:
        return
    energy = counter_at[ends - first] - counter_at[ends - width - first]
    fams[inc_name].add(f"{inc_name}{{{label}}}", energy, ends)
    # energy / width with AVG_SCALE decimals, rounded half up, as an integer of milli-W.
    milli = (energy * 10**AVG_SCALE * 2 + width) // (2 * width)
    fams[avg_name].add(f"{avg_name}{{{label}}}", milli, ends, scale=AVG_SCALE)


def raw_chunk(
    sensors: Sequence[Sensor],
    start: int,
    end: int,
    counter_start: np.ndarray,
    min_1m_end: int,
    min_15m_end: int,
) -> tuple[dict[str, bytes], int, np.ndarray]:
    """OpenMetrics for per-second data of [start, end) and the aggregates ending in it.

    `counter_start` is each sensor's counter at `start`.  Returns one text per
    block stream (homewatt/streams.py: per-second data and 1m aggregates in
    "raw"; 15m aggregates and the counter at each quarter-hour in "quarter"),
    their sample count and the counters at `end` (the next chunk's start).
    """
    lead = start - (start - 900) // 900 * 900  # seconds back to an aligned point >= 900 s before
    first = start - lead
    seconds = np.arange(first, end, dtype=np.int64)
    power = loadmodel.power(tuple(sensors), seconds)  # (S, N)
    present = loadmodel.available(tuple(sensors), seconds[lead:])  # replayed data may have holes
    fams = _families(POWER, ENERGY, AVG1M, INC1M)
    quarter = _families(ENERGY, AVG15M, INC15M)
    counter_end = np.empty(len(sensors), dtype=np.int64)
    ts = seconds[lead:]
    ends_1m = np.arange(-(-max(start, min_1m_end) // 60) * 60, end, 60, dtype=np.int64)
    ends_15m = np.arange(-(-max(start, min_15m_end) // 900) * 900, end, 900, dtype=np.int64)
    for i, s in enumerate(sensors):
        # counter_at[j] = counter at second first + j, for j in 0..N (one past the end).
        counter_at = np.empty(seconds.size + 1, dtype=np.int64)
        counter_at[0] = 0
        np.cumsum(power[i], out=counter_at[1:])
        counter_at += counter_start[i] - counter_at[lead]
        counter_end[i] = counter_at[-1]
        label = f'{RAW_LABELS}sensor="{s.id}"'
        keep = present[i] if not present[i].all() else slice(None)
        fams[POWER].add(f"{POWER}{{{label}}}", power[i, lead:][keep], ts[keep])
        fams[ENERGY].add(f"{ENERGY}_total{{{label}}}", counter_at[lead:-1][keep], ts[keep])
        # The counter at each quarter-hour, for the quarter stream's 3-year totals;
        # none where the meter was silent, like the per-second series.
        q = ends_15m[present[i][ends_15m - start]]
        quarter[ENERGY].add(f"{ENERGY}_total{{{label}}}", counter_at[q - first], q)
        slabel = f'sensor="{s.id}"'
        _window_aggregates(fams, slabel, counter_at, first, 60, AVG1M, INC1M, ends_1m)
        _window_aggregates(quarter, slabel, counter_at, first, 900, AVG15M, INC15M, ends_15m)
    texts, samples = _streams({RAW: fams, QUARTER: quarter})
    return texts, samples, counter_end


def quarter_energy(sensors: Sequence[Sensor], start: int, end: int) -> np.ndarray:
    """Joules per sensor per quarter-hour [q, q + 900) for aligned q in [start, end): (S, Q).

    Computed a UTC day at a time to bound memory (3 years x 6 sensors at 1 s would
    be 570 M values).
    """
    assert start % 900 == 0 and end % 900 == 0
    out = []
    day = 86400
    t = start
    while t < end:
        stop = min(end, (t // day + 1) * day)
        p = loadmodel.power(tuple(sensors), np.arange(t, stop, dtype=np.int64))
        out.append(p.reshape(len(sensors), -1, 900).sum(axis=2))
        t = stop
    return np.concatenate(out, axis=1) if out else np.zeros((len(sensors), 0), np.int64)


def history_chunk(
    sensors: Sequence[Sensor], quarters: np.ndarray, counters: np.ndarray, energy: np.ndarray
) -> tuple[dict[str, bytes], int]:
    """Quarter-hour history (the quarter stream): the counter at each instant Q and the
    15m aggregates ending at Q.

    `quarters` (Q,) aligned instants, `counters` (S, Q) the counter there, `energy`
    (S, Q) the joules of [Q - 900, Q).
    """
    fams = _families(ENERGY, AVG15M, INC15M)
    for i, s in enumerate(sensors):
        fams[ENERGY].add(f'{ENERGY}_total{{{RAW_LABELS}sensor="{s.id}"}}', counters[i], quarters)
        label = f'sensor="{s.id}"'
        fams[INC15M].add(f"{INC15M}{{{label}}}", energy[i], quarters)
        milli = (energy[i] * 10**AVG_SCALE * 2 + 900) // (2 * 900)
        fams[AVG15M].add(f"{AVG15M}{{{label}}}", milli, quarters, scale=AVG_SCALE)
    return _streams({QUARTER: fams})
