"""Chunks from their generator to promtool, with a bounded number in between.

A chunk's text is written straight into its input files in the staging
directory, a series at a time (backfill/generate.py), then a promtool worker
thread ingests it (backfill/ingest.py).  At most `workers + 1` chunks' files
exist at once, the one being written included, so disk use is bounded by the
chunk size and the generators never run far ahead of promtool.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

from tqdm import tqdm

from backfill.ingest import Ingester
from backfill.plan import Chunk

INPUT = "input.om"

Write = Callable[[dict[str, BinaryIO]], dict[str, int]]  # writes the streams' texts, returns their samples


class Writer:
    def __init__(
        self,
        ingester: Ingester,
        pool: cf.ThreadPoolExecutor,
        workers: int,
        bar: tqdm,
        on_chunk: Callable[[], None] = lambda: None,
    ) -> None:
        self.ingester, self.pool, self.bar, self.on_chunk = ingester, pool, bar, on_chunk
        self.slots = threading.BoundedSemaphore(workers + 1)
        self.lock = threading.Lock()
        self.jobs: list[cf.Future[None]] = []
        self.written = 0
        self.samples = 0
        self.promtool_rss = 0  # the largest promtool's peak memory, bytes

    def write(self, chunk: Chunk, streams: Sequence[str], block: int, write: Write) -> None:
        """Have `write` fill `chunk`'s input files (one per stream), then queue them for promtool.
        Waits while `workers + 1` chunks are on disk; raises what a finished ingest raised."""
        self.slots.acquire()
        try:
            _raise_failed(self.jobs)
            stage = self.ingester.stage(chunk)
            paths = {s: stage / s / INPUT for s in streams}
            with contextlib.ExitStack() as files:
                out: dict[str, BinaryIO] = {}
                for stream, path in paths.items():
                    path.parent.mkdir(parents=True, exist_ok=True)
                    out[stream] = files.enter_context(path.open("wb", buffering=1 << 20))
                counts = write(out)
            inputs: dict[str, Path] = {}
            for stream, path in paths.items():
                if counts[stream]:
                    inputs[stream] = path
                else:
                    path.unlink()
        except BaseException:
            self.slots.release()
            raise
        self.jobs.append(self.pool.submit(self._ingest, chunk, inputs, sum(counts.values()), block))

    def _ingest(self, chunk: Chunk, inputs: dict[str, Path], n: int, block: int) -> None:
        try:
            info = self.ingester.ingest(chunk, inputs, n, block)
        finally:
            self.slots.release()
        with self.lock:
            self.written += 1
            self.samples += n
            self.promtool_rss = max(self.promtool_rss, info["promtool_rss"])
            self.bar.update(n)
        self.on_chunk()

    def finish(self) -> None:
        for job in self.jobs:
            job.result()


def _raise_failed(jobs: list[cf.Future[None]]) -> None:
    for job in jobs:
        if job.done() and job.exception() is not None:
            raise job.exception()  # type: ignore[misc]
