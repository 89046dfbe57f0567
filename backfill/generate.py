"""The series the backfill writes, computed from the load model and written as OpenMetrics.

Everything is derived from the per-second power of the one shared model, in
integer joules, so backfilled values equal what the exporter serves live:
the counter at second t is the exact sum of power before t, a minute's
energy is counter(T) - counter(T - 60 s) on the calendar, and mean power is
that energy over the window's length.  The recorded series mean what the rules
in rules/ compute live; the backfill places them on calendar boundaries
(a rule group's own samples sit at its hash offset), with each sample at T
covering [T - window, T).

Text goes to a file (or any binary stream) a series at a time, so memory holds
one chunk's power and one series' text, whatever the chunk's size on disk; the
model itself runs on at most MODEL_CELLS (sensor, second) pairs at once.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from typing import BinaryIO

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
    READING1D,
    READING15M,
    SENSOR,
    Metric,
)
from homewatt.fleet import DEFAULT_TIMEZONE, Sensor
from homewatt.localday import at_midnight

# The live series' labels (prometheus.yml pins instance), so history and live are one series.
RAW_LABELS = f'job="{EXPORTER_JOB}",instance="{EXPORTER_INSTANCE}",'

# Mean power is energy / window; with 3 decimals it is exact for a 1 s meter over
# 60 s (multiples of 1/60 W would need more) to within 0.0005 W.
AVG_SCALE = 3

# The model's arrays are (sensors x seconds) per usage, and floats on the way: ~2 M cells
# keep one call under a few hundred MB.
MODEL_CELLS = 2_000_000


class Stream:
    """One block stream's OpenMetrics text, written family by family, a series at a time."""

    def __init__(self, out: BinaryIO):
        self.out = out
        self.samples = 0
        self._family: Metric | None = None

    def series(self, metric: Metric, labels: str, values: np.ndarray, ts: np.ndarray, scale: int = 0) -> None:
        """One series: `labels` is the inside of the braces.  A family's header comes with its
        first sample, so a family without any is left out."""
        if values.size == 0:
            return
        if metric is not self._family:
            self.out.write(family_header(metric.family, metric.kind, metric.help))
            self._family = metric
        self.out.write(series_lines(f"{metric.name}{{{labels}}}", values, ts, scale))
        self.samples += int(values.size)

    def close(self) -> None:
        self.out.write(EOF_MARK)


def _timezone(sensors: Sequence[Sensor]) -> str:
    """The fleet's timezone (every sensor carries it)."""
    return sensors[0].timezone if sensors else DEFAULT_TIMEZONE


def _slices(n: int, per_row: int) -> Iterator[slice]:
    """Sensor slices whose (sensors x per_row) arrays stay near MODEL_CELLS."""
    size = max(1, MODEL_CELLS // max(per_row, 1))
    return (slice(i, min(i + size, n)) for i in range(0, n, size))


def power(sensors: Sequence[Sensor], seconds: np.ndarray) -> np.ndarray:
    """loadmodel.power of every sensor at `seconds`, (S, N), a few sensors at a time."""
    group = tuple(sensors)
    out = np.empty((len(group), seconds.size), dtype=np.int64)
    for sl in _slices(len(group), seconds.size):
        out[sl] = loadmodel.power(group[sl], seconds)
    return out


def power_sums(sensors: Sequence[Sensor], start: int, end: int) -> np.ndarray:
    """Joules each sensor used over [start, end), (S,), a UTC day at a time."""
    out = np.zeros(len(sensors), dtype=np.int64)
    t = start
    while t < end:
        stop = min(end, (t // DAY + 1) * DAY)
        out += power(sensors, np.arange(t, stop, dtype=np.int64)).sum(axis=1)
        t = stop
    return out


def _window_aggregates(
    stream: Stream,
    label: str,
    counter_at: np.ndarray,
    first: int,
    width: int,
    metric: Metric,
    ends: np.ndarray,
) -> None:
    """Energy (`metric` an increase) or mean power (an avg) for windows [T - width, T), T in
    `ends` (aligned instants).  `counter_at[i]` is the counter at second `first + i`."""
    if ends.size == 0:
        return
    energy = counter_at[ends - first] - counter_at[ends - width - first]
    if metric in (INC1M, INC15M):
        stream.series(metric, label, energy, ends)
    else:  # energy / width with AVG_SCALE decimals, rounded half up, as an integer of milli-W.
        milli = (energy * 10**AVG_SCALE * 2 + width) // (2 * width)
        stream.series(metric, label, milli, ends, scale=AVG_SCALE)


def write_raw_chunk(
    out: dict[str, BinaryIO],
    sensors: Sequence[Sensor],
    start: int,
    end: int,
    counter_start: np.ndarray,
    min_1m_end: int,
    min_15m_end: int,
) -> tuple[dict[str, int], np.ndarray]:
    """OpenMetrics for per-second data of [start, end) and the aggregates ending in it.

    `counter_start` is each sensor's counter at `start`.  Writes one text per block
    stream into `out` (homewatt/streams.py: per-second data and 1m aggregates in
    "raw"; 15m aggregates and the counter at each quarter-hour and local midnight in
    "quarter"), and
    returns each stream's sample count and the counters at `end` (the next chunk's
    start).
    """
    q = QUARTER_HOUR
    lead = start - (start - q) // q * q  # seconds back to an aligned point >= a quarter-hour before
    first = start - lead
    seconds = np.arange(first, end, dtype=np.int64)
    watts = power(sensors, seconds)  # (S, N): with the counters, the chunk's memory
    present = loadmodel.available(tuple(sensors), seconds[lead:])  # replayed data may have holes
    # counters[i, j] = counter at second first + j, for j in 0..N (one past the end).
    counters = np.zeros((len(sensors), seconds.size + 1), dtype=np.int64)
    np.cumsum(watts, axis=1, out=counters[:, 1:])
    counters += (counter_start - counters[:, lead])[:, None]
    ts = seconds[lead:]
    ends_1m = np.arange(-(-max(start, min_1m_end) // MINUTE) * MINUTE, end, MINUTE, dtype=np.int64)
    ends_15m = np.arange(-(-max(start, min_15m_end) // q) * q, end, q, dtype=np.int64)
    keep = [p if not p.all() else slice(None) for p in present]
    labels = [f'{SENSOR}="{s.id}"' for s in sensors]
    raw, quarter = Stream(out[RAW_STREAM]), Stream(out[QUARTER_STREAM])
    # Family by family, as OpenMetrics wants them.
    for i, label in enumerate(labels):
        raw.series(POWER, RAW_LABELS + label, watts[i, lead:][keep[i]], ts[keep[i]])
    for i, label in enumerate(labels):
        raw.series(ENERGY, RAW_LABELS + label, counters[i, lead:-1][keep[i]], ts[keep[i]])
    for metric in (AVG1M, INC1M):
        for i, label in enumerate(labels):
            _window_aggregates(raw, label, counters[i], first, MINUTE, metric, ends_1m)
    # The counter at each quarter-hour, for the quarter stream's 3-year totals; none where
    # the meter was silent, like the per-second series.
    for i, label in enumerate(labels):
        at = ends_15m[present[i][ends_15m - start]]
        quarter.series(READING15M, label, counters[i, at - first], at)
    # ... and at each local midnight, for the day bars (homewatt/localday.py).
    midnight = at_midnight(ends_15m, _timezone(sensors))
    for i, label in enumerate(labels):
        at = ends_15m[midnight & present[i][ends_15m - start]]
        quarter.series(READING1D, label, counters[i, at - first], at)
    for metric in (AVG15M, INC15M):
        for i, label in enumerate(labels):
            _window_aggregates(quarter, label, counters[i], first, q, metric, ends_15m)
    raw.close()
    quarter.close()
    return {RAW_STREAM: raw.samples, QUARTER_STREAM: quarter.samples}, counters[:, -1].copy()


def raw_chunk(
    sensors: Sequence[Sensor],
    start: int,
    end: int,
    counter_start: np.ndarray,
    min_1m_end: int,
    min_15m_end: int,
) -> tuple[dict[str, bytes], int, np.ndarray]:
    """`write_raw_chunk` into memory: the texts of the streams that have samples, their sample
    count and the counters at `end`."""
    bufs = {RAW_STREAM: io.BytesIO(), QUARTER_STREAM: io.BytesIO()}
    counts, counter_end = write_raw_chunk(
        bufs,  # type: ignore[arg-type]
        sensors,
        start,
        end,
        counter_start,
        min_1m_end,
        min_15m_end,
    )
    texts = {name: buf.getvalue() for name, buf in bufs.items() if counts[name]}
    return texts, sum(counts.values()), counter_end


def quarter_energy(sensors: Sequence[Sensor], start: int, end: int) -> np.ndarray:
    """Joules per sensor per quarter-hour [q, q + 15 min) for aligned q in [start, end): (S, Q).

    Computed a UTC day and a few sensors at a time to bound memory (3 years x 6 sensors
    at 1 s would be 570 M values).
    """
    if start % QUARTER_HOUR or end % QUARTER_HOUR:
        raise ValueError(f"[{start}, {end}) is not on quarter-hours")
    group = tuple(sensors)
    out = np.empty((len(group), (end - start) // QUARTER_HOUR), dtype=np.int64)
    t = start
    while t < end:
        stop = min(end, (t // DAY + 1) * DAY)
        seconds = np.arange(t, stop, dtype=np.int64)
        a, b = (t - start) // QUARTER_HOUR, (stop - start) // QUARTER_HOUR
        for sl in _slices(len(group), seconds.size):
            p = loadmodel.power(group[sl], seconds)
            out[sl, a:b] = p.reshape(p.shape[0], -1, QUARTER_HOUR).sum(axis=2)
        t = stop
    return out


def write_history_chunk(
    out: BinaryIO, sensors: Sequence[Sensor], quarters: np.ndarray, counters: np.ndarray, energy: np.ndarray
) -> int:
    """Quarter-hour history (the quarter stream): the counter at each instant Q (and again
    as the daily reading where Q is a local midnight) and the 15m aggregates ending at Q;
    returns the sample count.

    `quarters` (Q,) aligned instants, `counters` (S, Q) the counter there, `energy`
    (S, Q) the joules of [Q - 15 min, Q).
    """
    stream = Stream(out)
    labels = [f'{SENSOR}="{s.id}"' for s in sensors]
    for i, label in enumerate(labels):
        stream.series(READING15M, label, counters[i], quarters)
    midnight = at_midnight(quarters, _timezone(sensors))
    for i, label in enumerate(labels):
        stream.series(READING1D, label, counters[i][midnight], quarters[midnight])
    for i, label in enumerate(labels):
        milli = (energy[i] * 10**AVG_SCALE * 2 + QUARTER_HOUR) // (2 * QUARTER_HOUR)
        stream.series(AVG15M, label, milli, quarters, scale=AVG_SCALE)
    for i, label in enumerate(labels):
        stream.series(INC15M, label, energy[i], quarters)
    stream.close()
    return stream.samples


def history_chunk(
    sensors: Sequence[Sensor], quarters: np.ndarray, counters: np.ndarray, energy: np.ndarray
) -> tuple[dict[str, bytes], int]:
    """`write_history_chunk` into memory, as {stream: text} (empty without samples)."""
    buf = io.BytesIO()
    n = write_history_chunk(buf, sensors, quarters, counters, energy)
    return ({QUARTER_STREAM: buf.getvalue()} if n else {}), n
