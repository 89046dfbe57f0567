"""What every sender shares: the partner's "slow down", and how many requests may be in flight.

A 429 or 503 with Retry-After is the partner speaking to the whole client, not
to one request: the gate holds every sender until that instant, and halves how
many requests may be in flight (additive increase, multiplicative decrease, as
TCP does): after the pause the senders come back one by one instead of all at
once, and one more request may fly for each `limit` that land.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator


class Gate:
    def __init__(self, limit: int = 4, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.cond = threading.Condition()
        self.most = self.limit = max(1, limit)
        self.in_flight = 0
        self.resume_at = 0.0
        self.held_by: int | None = None  # the thread told to wait: it sleeps its own Retry-After
        self.landed = 0  # since the limit last changed
        self.pauses = 0

    def reset(self, limit: int) -> None:
        """A new round with `limit` senders: the full limit again, no pause."""
        with self.cond:
            self.most = self.limit = max(1, limit)
            self.resume_at, self.held_by, self.landed, self.pauses = 0.0, None, 0, 0
            self.cond.notify_all()

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        """One request in flight: after any pause, and within the limit."""
        me = threading.get_ident()
        with self.cond:
            while True:
                wait = self.resume_at - self.clock()
                if wait > 0 and self.held_by != me:
                    self.cond.wait(wait)
                elif self.in_flight >= self.limit:
                    self.cond.wait()
                else:
                    break
            self.in_flight += 1
        try:
            yield
        finally:
            with self.cond:
                self.in_flight -= 1
                self.cond.notify_all()

    def hold(self, seconds: float) -> None:
        """The partner asked to wait `seconds`: everyone waits, and fewer requests fly after."""
        with self.cond:
            now = self.clock()
            if self.resume_at <= now:  # a new pause: one halving, however many answers said so
                self.limit = max(1, self.limit // 2)
                self.landed = 0
                self.pauses += 1
            if now + seconds >= self.resume_at:
                self.resume_at, self.held_by = now + seconds, threading.get_ident()

    def landed_one(self) -> None:
        with self.cond:
            self.landed += 1
            if self.limit < self.most and self.landed >= self.limit:
                self.limit += 1
                self.landed = 0
                self.cond.notify_all()
