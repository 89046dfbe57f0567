"""What the backfill writes, cut into chunks that are each exactly one TSDB block.

promtool's OpenMetrics import re-reads its whole input once per block window,
so every input file here covers exactly one window, aligned as promtool aligns
them (multiples of the block duration since the epoch).  The raw window uses
54 h blocks (per-second data, ~2.3 M samples for the default fleet), the
3-year quarter-hour history 486 h blocks; both are TSDB compaction ranges
(2 h x 3^k), so Prometheus's compactor takes them as they are.

A chunk holds at most SAMPLES_PER_CHUNK samples: promtool keeps a block's
samples in memory, and the backfill a chunk's power.  A window of a fleet too
large for that is cut into groups of sensors, one chunk (and one block) each:
blocks of the same window then overlap in time with disjoint series, which
Prometheus merges, and so does the Thanos compactor (vertical compaction, on
in stack/thanos.py).  The default fleet's windows are one chunk each.

Time layout (all UTC seconds):

    history_start ......... raw_start ............. live_start
    | quarter-hours: counter, |  per-second power and    | live scrapes
    | avg15m, increase15m     |  counter, 1m and 15m     |
    |   at Q < raw_start      |  aggregates at T < live  |
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from homewatt.contract import DAY, MINUTE, QUARTER_HOUR

RAW_BLOCK = 54 * 3600
HISTORY_BLOCK = 486 * 3600
SAMPLES_PER_CHUNK = 4_000_000  # promtool maps its input (~95 bytes a sample) and holds the block: ~0.5 GB


@dataclass(frozen=True)
class Chunk:
    kind: str  # "raw" or "history"
    start: int  # first second covered (inclusive)
    end: int  # end (exclusive)
    first: int = 0  # the sensors [first, stop) of the fleet ...
    stop: int | None = None  # ... None: all of them

    @property
    def id(self) -> str:
        whole = f"{self.kind}-{self.start}-{self.end}"
        return whole if self.stop is None else f"{whole}-s{self.first}-{self.stop}"

    def sensors(self, n: int) -> range:
        """The indexes of the chunk's sensors in a fleet of `n`."""
        return range(self.first, n if self.stop is None else self.stop)


def samples_per_sensor(kind: str, seconds: int) -> int:
    """Samples a sensor has in `seconds` of a chunk of `kind` (the backfill's series).

    The daily reading (a sample at each local midnight, under 0.4 % of a history chunk)
    is left out, so that the groups, and the plan's chunks, stay what they were."""
    if kind == "raw":  # power and counter every second, 1m and 15m aggregates, the quarter-hour reading
        return 2 * seconds + 2 * (seconds // MINUTE) + 3 * (seconds // QUARTER_HOUR)
    return 3 * (seconds // QUARTER_HOUR)  # the reading, avg15m, increase15m


def group_size(kind: str) -> int:
    """Sensors per chunk of `kind`, so that a whole window stays under SAMPLES_PER_CHUNK."""
    block = RAW_BLOCK if kind == "raw" else HISTORY_BLOCK
    return max(1, SAMPLES_PER_CHUNK // samples_per_sensor(kind, block))


@dataclass(frozen=True)
class Plan:
    live_start: int  # first second metered live: the raw window ends just before it
    raw_start: int
    history_start: int
    chunks: tuple[Chunk, ...]

    def of(self, kind: str) -> list[Chunk]:
        return [c for c in self.chunks if c.kind == kind]


def _windows(kind: str, start: int, end: int, block: int, sensors: int | None) -> list[Chunk]:
    size = group_size(kind)
    groups: list[tuple[int, int | None]] = [(0, None)]
    if sensors is not None and sensors > size:
        groups = [(i, min(i + size, sensors)) for i in range(0, sensors, size)]
    out = []
    k = start // block
    while k * block < end:
        a, b = max(start, k * block), min(end, (k + 1) * block)
        out += [Chunk(kind, a, b, first, stop) for first, stop in groups]
        k += 1
    return out


def make_plan(live_start: int, raw_days: float, history_days: float, sensors: int | None = None) -> Plan:
    """The chunks of a backfill ending at `live_start`; `sensors`: the fleet's size, which cuts
    each window into groups of sensors when it is large (None: one chunk per window)."""
    raw_start = live_start - round(raw_days * DAY)
    # History: whole quarter-hours strictly before the raw window starts.
    history_end = math.ceil(raw_start / QUARTER_HOUR) * QUARTER_HOUR  # first quarter instant >= raw_start
    history_start = (history_end - round(history_days * DAY)) // QUARTER_HOUR * QUARTER_HOUR
    chunks = []
    if history_days > 0:
        chunks += _windows("history", history_start, history_end, HISTORY_BLOCK, sensors)
    if raw_days > 0:
        chunks += _windows("raw", raw_start, live_start, RAW_BLOCK, sensors)
    return Plan(live_start, raw_start, history_start, tuple(chunks))
