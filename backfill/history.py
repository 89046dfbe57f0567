"""The quarter-hour history, written newest window first with bounded memory.

The counter at a history instant is known only from the raw window's start,
walking back: counter(Q) = counter(later) - the energy in between.  So the
windows (chunks) are taken newest first, each sensor's counter carried from one
to the next older, and each window's quarter-hour energies are summed from the
model in worker processes, a few dozen sensors a task, AHEAD windows in
advance.  Memory holds those few windows' energies, never the three years, and
the workers stay busy while the main thread writes the raw chunks: it calls
`poll()` between two of them, and `drain()` at the end.
"""

from __future__ import annotations

import concurrent.futures as cf
import itertools
from collections import deque
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np

from backfill import generate
from backfill.plan import HISTORY_BLOCK, Chunk, Plan
from backfill.writer import Writer
from homewatt.contract import QUARTER_HOUR, QUARTER_STREAM
from homewatt.fleet import Sensor

SENSORS_PER_TASK = 64  # a task: 64 sensors x a window (20 days), about half a minute of one core
AHEAD = 2  # windows summed in advance of the one being written


class HistoryLane:
    def __init__(
        self,
        writer: Writer,
        procs: cf.ProcessPoolExecutor,
        sensors: tuple[Sensor, ...],
        plan: Plan,
        todo: list[Chunk],
        raw_start_counter: np.ndarray,
    ):
        self.writer, self.procs, self.sensors = writer, procs, sensors
        self.todo = {c.id for c in todo}
        oldest = min((c.start for c in todo), default=None)
        # Newest window first; windows older than every chunk left to write need no sums.
        chunks = [c for c in reversed(plan.of("history")) if oldest is not None and c.start >= oldest]
        self._next: Iterator[Chunk] = iter(chunks)
        self._pending: deque[tuple[Chunk, list[cf.Future[np.ndarray]]]] = deque()
        self.carry = np.zeros(0, dtype=np.int64)
        if chunks:
            history_end = plan.of("history")[-1].end  # the first quarter instant >= raw_start
            # Each sensor's counter at the end of the next window to write (newest: history_end).
            self.carry = raw_start_counter + generate.power_sums(sensors, plan.raw_start, history_end)
        for chunk in itertools.islice(self._next, AHEAD + 1):
            self._submit(chunk)

    def _submit(self, chunk: Chunk) -> None:
        """Sum the quarters [Q - 15 min, Q) for Q in the window, and the one ending at its end."""
        group = self._group(chunk)
        first, end = chunk.start - QUARTER_HOUR, chunk.end
        futures = [
            self.procs.submit(generate.quarter_energy, group[i : i + SENSORS_PER_TASK], first, end)
            for i in range(0, len(group), SENSORS_PER_TASK)
        ]
        self._pending.append((chunk, futures))

    def _group(self, chunk: Chunk) -> tuple[Sensor, ...]:
        r = chunk.sensors(len(self.sensors))
        return self.sensors[r.start : r.stop]

    def poll(self) -> None:
        """Write the windows whose sums are done, without waiting for any."""
        while self._pending and all(f.done() for f in self._pending[0][1]):
            self._write_next()

    def drain(self) -> None:
        """Write every window left, waiting for their sums."""
        while self._pending:
            self._write_next()

    def _write_next(self) -> None:
        chunk, futures = self._pending.popleft()
        nxt = next(self._next, None)
        if nxt is not None:
            self._submit(nxt)
        # energy[:, k]: the quarter [start - 15 min + 15 min k, start + 15 min k), k = 0..M.
        energy = np.concatenate([f.result() for f in futures])
        r = chunk.sensors(len(self.sensors))
        # counter(Q_i) = counter(end) - the quarters k = i + 1 .. M, for Q_i = start + 15 min i.
        after = np.cumsum(energy[:, :0:-1], axis=1)[:, ::-1]
        counters = self.carry[r.start : r.stop, None] - after
        self.carry[r.start : r.stop] = counters[:, 0]  # the counter at this window's start
        if chunk.id not in self.todo:  # written by an earlier run: only its counters were needed
            return
        instants = np.arange(chunk.start, chunk.end, QUARTER_HOUR, dtype=np.int64)
        group = self._group(chunk)

        def write(out: dict[str, BinaryIO]) -> dict[str, int]:
            n = generate.write_history_chunk(out[QUARTER_STREAM], group, instants, counters, energy[:, :-1])
            return {QUARTER_STREAM: n}

        self.writer.write(chunk, [QUARTER_STREAM], HISTORY_BLOCK, write)
