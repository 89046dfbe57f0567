"""The on-disk outbox: a payload is written before it is sent and removed only
once its breakdown is pushed, so a partner outage or a restart loses nothing.

pending/   what still has to land (retried by every run and by the scheduler)
rejected/  what the partner refused for good (4xx other than 429), with its answer;
           it stays there, and HomewattPartnerRejected fires, until someone requeues
           it (`python -m partner_job requeue KEY`) or deletes it
"""

from __future__ import annotations

import gzip
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def filename(key: str) -> str:
    """An entry's file, pending or rejected: its Idempotency-Key with ':' made file-safe."""
    return key.replace(":", "_") + ".json.gz"


@dataclass
class Entry:
    key: str  # Idempotency-Key: {sensor}:{window_end_date}
    sensor: str
    window_start: int
    window_end: int
    payload: dict[str, Any]
    attempts: int = 0
    last_error: str = ""
    created: float = 0.0  # when first written: the backlog alert's clock (0: written before it existed)

    @property
    def filename(self) -> str:
        return filename(self.key)

    def body(self) -> bytes:
        """The exact JSON sent: the same bytes on every retry, so the partner sees the same body."""
        return json.dumps(self.payload, separators=(",", ":")).encode()

    def dump(self) -> bytes:
        return gzip.compress(json.dumps(self.__dict__).encode(), mtime=0)

    @classmethod
    def load(cls, path: Path) -> Entry:
        return cls(**json.loads(gzip.decompress(path.read_bytes())))


class Outbox:
    def __init__(self, root: Path):
        self.pending_dir = root / "pending"
        self.rejected_dir = root / "rejected"
        self.pending_dir.mkdir(parents=True, exist_ok=True)

    def put(self, entry: Entry) -> None:
        _atomic_write(self.pending_dir / entry.filename, entry.dump())

    def pending(self) -> list[Entry]:
        return [Entry.load(p) for p in sorted(self.pending_dir.glob("*.json.gz"))]

    def has(self, key: str) -> bool:
        return (self.pending_dir / filename(key)).exists()

    def created(self, key: str) -> float:
        """When the pending payload of `key` was first written; 0 if none is pending."""
        path = self.pending_dir / filename(key)
        try:
            return Entry.load(path).created
        except (OSError, ValueError):
            return 0.0

    def done(self, entry: Entry) -> None:
        (self.pending_dir / entry.filename).unlink(missing_ok=True)

    def reject(self, entry: Entry, status: int, problem: Any) -> Path:
        record = {**entry.__dict__, "status": status, "problem": problem}
        path = self.rejected_dir / entry.filename
        _atomic_write(path, gzip.compress(json.dumps(record).encode(), mtime=0))
        self.done(entry)
        return path

    def rejected(self) -> list[dict[str, Any]]:
        if not self.rejected_dir.exists():
            return []
        return [
            json.loads(gzip.decompress(p.read_bytes())) for p in sorted(self.rejected_dir.glob("*.json.gz"))
        ]

    def requeue(self, key: str) -> Entry:
        """A rejected payload back to pending, for the next delivery (after its cause is fixed)."""
        path = self.rejected_dir / filename(key)
        if not path.exists():
            raise KeyError(f"no rejected payload {key!r} in {self.rejected_dir}")
        record = json.loads(gzip.decompress(path.read_bytes()))
        record.pop("status", None)
        record.pop("problem", None)
        entry = Entry(**record)
        self.put(entry)
        path.unlink()
        return entry
