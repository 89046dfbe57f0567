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
from homewatt.contract import (
    AVG1M,
    AVG15M,
    DAY,
    ENERGY,
    EXPORTER_INSTANCE,
    EXPORTER_JOB,
    INC1M,
    INC15M,
    MINUTE,
    POWER,
    QUARTER_HOUR,
    QUARTER_STREAM,
    RAW_STREAM,
    READING15M,
    SENSOR,
    Metric,
)
from homewatt.fleet import Sensor

# The live series' labels (prometheus.yml pins instance), so history and live are one series.
RAW_LABELS = f'job="{EXPORTER_JOB}",instance="{EXPORTER_INSTANCE}",'

# Mean power is energy / window; with 3 decimals it is exact for a 1 s meter over
# 60 s (multiples of 1/60 W would need more) to within 0.0005 W.
AVG_SCALE = 3


@dataclass
class Family:
    metric: Metric
    lines: list[bytes]
    samples: int = 0

    def add(self, labels: str, values: np.ndarray, ts: np.ndarray, scale: int = 0) -> None:
        """One series: `labels` is the inside of the braces."""
        self.lines.append(series_lines(f"{self.metric.name}{{{labels}}}", values, ts, scale))
        self.samples += int(values.size)


def _families(*metrics: Metric) -> dict[Metric, Family]:
    return {m: Family(m, []) for m in metrics}


def _render(families: dict[Metric, Family]) -> tuple[bytes, int]:
    parts = []
    total = 0
    for fam in families.values():
        if not fam.samples:
            continue
        parts.append(family_header(fam.metric.family, fam.metric.kind, fam.metric.help))
        parts.extend(fam.lines)
        total += fam.samples
    parts.append(EOF_MARK)
    return b"".join(parts), total


def _streams(streams: dict[str, dict[Metric, Family]]) -> tuple[dict[str, bytes], int]:
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
    fams: dict[Metric, Family],
    label: str,
    counter_at: np.ndarray,
    first: int,
    width: int,
    avg: Metric,
    inc: Metric,
    ends: np.ndarray,
) -> None:
    """Energy and mean power for windows [T - width, T), T in `ends` (aligned instants).

    `counter_at[i]` is the counter at second `first + i`.
    """
    if ends.size == 0:
        return
    energy = counter_at[ends - first] - counter_at[ends - width - first]
    fams[inc].add(label, energy, ends)
    # energy / width with AVG_SCALE decimals, rounded half up, as an integer of milli-W.
    milli = (energy * 10**AVG_SCALE * 2 + width) // (2 * width)
    fams[avg].add(label, milli, ends, scale=AVG_SCALE)


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
    q = QUARTER_HOUR
    lead = start - (start - q) // q * q  # seconds back to an aligned point >= a quarter-hour before
    first = start - lead
    seconds = np.arange(first, end, dtype=np.int64)
    power = loadmodel.power(tuple(sensors), seconds)  # (S, N)
    present = loadmodel.available(tuple(sensors), seconds[lead:])  # replayed data may have holes
    fams = _families(POWER, ENERGY, AVG1M, INC1M)
    quarter = _families(READING15M, AVG15M, INC15M)
    counter_end = np.empty(len(sensors), dtype=np.int64)
    ts = seconds[lead:]
    ends_1m = np.arange(-(-max(start, min_1m_end) // MINUTE) * MINUTE, end, MINUTE, dtype=np.int64)
    ends_15m = np.arange(-(-max(start, min_15m_end) // q) * q, end, q, dtype=np.int64)
    for i, s in enumerate(sensors):
        # counter_at[j] = counter at second first + j, for j in 0..N (one past the end).
        counter_at = np.empty(seconds.size + 1, dtype=np.int64)
        counter_at[0] = 0
        np.cumsum(power[i], out=counter_at[1:])
        counter_at += counter_start[i] - counter_at[lead]
        counter_end[i] = counter_at[-1]
        slabel = f'{SENSOR}="{s.id}"'
        label = RAW_LABELS + slabel
        keep = present[i] if not present[i].all() else slice(None)
        fams[POWER].add(label, power[i, lead:][keep], ts[keep])
        fams[ENERGY].add(label, counter_at[lead:-1][keep], ts[keep])
        # The counter at each quarter-hour, for the quarter stream's 3-year totals;
        # none where the meter was silent, like the per-second series.
        at = ends_15m[present[i][ends_15m - start]]
        quarter[READING15M].add(slabel, counter_at[at - first], at)
        _window_aggregates(fams, slabel, counter_at, first, MINUTE, AVG1M, INC1M, ends_1m)
        _window_aggregates(quarter, slabel, counter_at, first, q, AVG15M, INC15M, ends_15m)
    texts, samples = _streams({RAW_STREAM: fams, QUARTER_STREAM: quarter})
    return texts, samples, counter_end


def quarter_energy(sensors: Sequence[Sensor], start: int, end: int) -> np.ndarray:
    """Joules per sensor per quarter-hour [q, q + 15 min) for aligned q in [start, end): (S, Q).

    Computed a UTC day at a time to bound memory (3 years x 6 sensors at 1 s would
    be 570 M values).
    """
    if start % QUARTER_HOUR or end % QUARTER_HOUR:
        raise ValueError(f"[{start}, {end}) is not on quarter-hours")
    out = []
    t = start
    while t < end:
        stop = min(end, (t // DAY + 1) * DAY)
        p = loadmodel.power(tuple(sensors), np.arange(t, stop, dtype=np.int64))
        out.append(p.reshape(len(sensors), -1, QUARTER_HOUR).sum(axis=2))
        t = stop
    return np.concatenate(out, axis=1) if out else np.zeros((len(sensors), 0), np.int64)


def history_chunk(
    sensors: Sequence[Sensor], quarters: np.ndarray, counters: np.ndarray, energy: np.ndarray
) -> tuple[dict[str, bytes], int]:
    """Quarter-hour history (the quarter stream): the counter at each instant Q and the
    15m aggregates ending at Q.

    `quarters` (Q,) aligned instants, `counters` (S, Q) the counter there, `energy`
    (S, Q) the joules of [Q - 15 min, Q).
    """
    fams = _families(READING15M, AVG15M, INC15M)
    for i, s in enumerate(sensors):
        label = f'{SENSOR}="{s.id}"'
        fams[READING15M].add(label, counters[i], quarters)
        fams[INC15M].add(label, energy[i], quarters)
        milli = (energy[i] * 10**AVG_SCALE * 2 + QUARTER_HOUR) // (2 * QUARTER_HOUR)
        fams[AVG15M].add(label, milli, quarters, scale=AVG_SCALE)
    return _streams({QUARTER_STREAM: fams})
