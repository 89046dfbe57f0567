"""What a run or a retry did, for its summary line and the benchmark."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass
class Stats:
    sensors: int = 0  # payloads written to the outbox by this run
    delivered: int = 0
    failed: int = 0  # kept in the outbox: retried by the next run or retry
    rejected: int = 0
    retried: int = 0  # sends that needed more than one attempt
    bytes: int = 0  # JSON sent, uncompressed
    gzip_bytes: int = 0  # and as it went over the wire
    seconds: float = 0.0
    fetch_seconds: float = 0.0  # until the last payload was in the outbox
    fetch_busy: float = 0.0  # summed over the readers: reading, building and writing payloads
    send_busy: float = 0.0  # summed over the senders: sending, validating, pushing
    problems: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def postfix(self) -> dict[str, int]:
        """The progress bar's counts (call with the lock held)."""
        return {"read": self.sensors, "sent": self.delivered, "failed": self.failed}

    def line(self, what: str) -> str:
        per = f" ({self.seconds / self.sensors:.3f} s per sensor)" if self.sensors else ""
        return (
            f"{what}: {self.sensors} sensors prepared, {self.delivered} sent, "
            f"{self.failed} failed (kept, will retry), {self.rejected} rejected, {self.retried} retried, "
            f"{self.bytes / 1e6:.2f} MB, {self.seconds:.1f} s{per}"
        )
