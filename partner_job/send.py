"""The senders: outbox entries out to the partner in parallel.

They are fed outbox paths, not payloads, through a bounded queue: a run's readers
hand over each entry as soon as it is on disk, and a retry hands over the pending
directory's listing.  A sender reads the entry's body when it sends it and drops
it after, so memory holds one body per sender whatever the fleet's size; the
queue holds paths, and a full one makes the readers wait.

What an answer means for the entry (push, then remove; set aside; keep) is
job.land's.  When `give_up_after` entries in a row fail (the partner is down, or
asks for a pause longer than the client waits), the round stops sending: the
rest stays pending, untouched, for the next retry, instead of each entry
spending its own retries on an outage.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from tqdm import tqdm

from partner_job.client import Outcome, PartnerClient
from partner_job.outbox import Outbox, Pending
from partner_job.stats import Stats

# What an answer means for the outbox (job.land): the Stats counter it adds to, and a problem line.
Land = Callable[[Pending, Outcome], tuple[str, str]]

log = logging.getLogger(__name__)

# Entries handed over but not yet taken: paths only (~100 bytes each), enough for the
# readers to run ahead of the senders for minutes, bounded all the same.
QUEUE = 1000


class Senders:
    def __init__(
        self,
        client: PartnerClient,
        outbox: Outbox,
        land: Land,
        workers: int,
        stats: Stats,
        bar: tqdm,
        give_up_after: int | None = None,
    ):
        self.client = client
        self.land = land
        self.outbox = outbox
        self.stats = stats
        self.bar = bar
        self.workers = max(1, workers)
        self.give_up_after = give_up_after or max(5, 2 * self.workers)
        self.queue: queue.Queue[Path | None] = queue.Queue(maxsize=QUEUE)
        self.in_a_row = 0  # entries failed one after the other
        self.not_tried = 0
        self.stopping = False  # the run failed or was interrupted: what is queued stays pending
        self.threads = [
            threading.Thread(target=self._work, name=f"sender-{i}", daemon=True) for i in range(self.workers)
        ]

    def __enter__(self) -> Senders:
        self.client.gate.reset(self.workers)
        for t in self.threads:
            t.start()
        return self

    def submit(self, path: Path) -> None:
        """Queue one outbox entry; blocks while the queue is full, unless the round is stopping
        (the entry is on disk: it stays pending)."""
        while not self.stopping:
            try:
                self.queue.put(path, timeout=0.5)
                return
            except queue.Full:
                continue

    def stop(self) -> None:
        """Send nothing more: what is queued or handed over later stays pending."""
        self.stopping = True

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Wait until every queued entry is done (or, after an error, left pending)."""
        if kind is not None:
            self.stop()
        for _ in self.threads:
            self.queue.put(None)
        for t in self.threads:
            t.join()
        if self.not_tried:
            self.stats.problems.append(
                f"{self.not_tried} not sent after {self.give_up_after} failures in a row "
                f"(kept in {self.outbox.pending_dir}, sent at the next retry)"
            )

    @property
    def given_up(self) -> bool:
        return self.in_a_row >= self.give_up_after

    def _work(self) -> None:
        while (path := self.queue.get()) is not None:
            try:
                self._one(path)
            except Exception as exc:  # a bug or the disk: the entry stays pending, the others go on
                log.exception("%s: not sent", path.name)
                self._tally(failed=1, problem=f"{path.name}: {exc} (kept, will retry)")

    def _tally(self, problem: str = "", **counts: int) -> None:
        with self.stats.lock:
            for name, n in counts.items():
                setattr(self.stats, name, getattr(self.stats, name) + n)
            if problem:
                self.stats.problems.append(problem)
            self.bar.update(1)
            self.bar.set_postfix(self.stats.postfix(), refresh=False)

    def _one(self, path: Path) -> None:
        if self.stopping:
            self._tally()
            return
        if self.given_up:
            with self.stats.lock:
                self.not_tried += 1
            self._tally(failed=1)
            return
        try:
            entry = Pending.read(path)
        except FileNotFoundError:  # landed meanwhile (a duplicate key, another process)
            self._tally()
            return
        except (OSError, ValueError, KeyError, EOFError, zlib.error) as exc:
            self._tally(failed=1, problem=f"{path}: unreadable outbox entry, left in place: {exc}")
            return
        start = time.monotonic()
        out = self.client.send(entry)
        counter, problem = self.land(entry, out)
        self._tally(problem, **{counter: 1})
        with self.stats.lock:
            self.stats.send_busy += time.monotonic() - start
            self.stats.bytes += entry.json_bytes
            self.stats.gzip_bytes += entry.gzip_bytes
            self.stats.retried += out.attempts > 1
            self.in_a_row = self.in_a_row + 1 if out.status == "failed" else 0
