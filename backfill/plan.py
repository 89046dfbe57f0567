"""What the backfill writes, cut into chunks that are each exactly one TSDB block.

promtool's OpenMetrics import re-reads its whole input once per block window,
so every input file here covers exactly one window, aligned as promtool aligns
them (multiples of the block duration since the epoch).  The raw window uses
54 h blocks (per-second data, ~2.3 M samples for the default fleet), the
3-year quarter-hour history 486 h blocks; both are TSDB compaction ranges
(2 h x 3^k), so Prometheus's compactor takes them as they are.

Time layout (all UTC seconds):

    history_start ......... raw_start ............. live_start
    | quarter-hours: counter, |  per-second power and    | live scrapes
    | avg15m, increase15m     |  counter, 1m and 15m     |
    |   at Q < raw_start      |  aggregates at T < live  |
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from homewatt.contract import DAY, QUARTER_HOUR

RAW_BLOCK = 54 * 3600
HISTORY_BLOCK = 486 * 3600


@dataclass(frozen=True)
class Chunk:
    kind: str  # "raw" or "history"
    start: int  # first second covered (inclusive)
    end: int  # end (exclusive)

    @property
    def id(self) -> str:
        return f"{self.kind}-{self.start}-{self.end}"


@dataclass(frozen=True)
class Plan:
    live_start: int  # first second metered live: the raw window ends just before it
    raw_start: int
    history_start: int
    chunks: tuple[Chunk, ...]

    def of(self, kind: str) -> list[Chunk]:
        return [c for c in self.chunks if c.kind == kind]


def _windows(kind: str, start: int, end: int, block: int) -> list[Chunk]:
    out = []
    k = start // block
    while k * block < end:
        out.append(Chunk(kind, max(start, k * block), min(end, (k + 1) * block)))
        k += 1
    return out


def make_plan(live_start: int, raw_days: float, history_days: float) -> Plan:
    raw_start = live_start - round(raw_days * DAY)
    # History: whole quarter-hours strictly before the raw window starts.
    history_end = math.ceil(raw_start / QUARTER_HOUR) * QUARTER_HOUR  # first quarter instant >= raw_start
    history_start = (history_end - round(history_days * DAY)) // QUARTER_HOUR * QUARTER_HOUR
    chunks = []
    if history_days > 0:
        chunks += _windows("history", history_start, history_end, HISTORY_BLOCK)
    if raw_days > 0:
        chunks += _windows("raw", raw_start, live_start, RAW_BLOCK)
    return Plan(live_start, raw_start, history_start, tuple(chunks))
