"""The on-disk outbox: a payload is written before it is sent and removed only
once its breakdown is pushed, so a partner outage or a restart loses nothing.

pending/   what still has to land (retried by every run and by the scheduler)
rejected/  what the partner refused for good (4xx other than 429), with its answer;
           it stays there, and HomewattPartnerRejected fires, until someone requeues
           it (`python -m partner_job requeue KEY`) or deletes it

A pending file is one gzip stream of the entry's JSON (`zcat | jq` reads it), written
as three gzip members so that a run over thousands of entries never parses a payload
it does not need:

  1. the entry's fields, ending with `"payload":`    (small: read alone to list, count, report)
  2. the payload exactly as sent, gzipped             (the request body, sent as the bytes on disk)
  3. `}`

Files written before this layout (one member, payload inside) are still read.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from homewatt.contract import JOULES_PER_WH

SUFFIX = ".json.gz"
WIRE_LEVEL = 4  # zlib's level 4: about as fast as 1, within 15 % of 6's size (~1/6 of the JSON)
_HEAD_END = b',"payload":'


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
    return key.replace(":", "_") + SUFFIX


def payload_joules(payload: dict[str, Any]) -> float:
    """The window's energy (J): what the breakdown's shares are multiplied by."""
    return JOULES_PER_WH * sum(v for v in payload["values"] if v is not None)


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

    def gzip_body(self) -> bytes:
        return gzip.compress(self.body(), compresslevel=WIRE_LEVEL, mtime=0)

    def dump(self) -> bytes:
        body = self.body()
        gz = gzip.compress(body, compresslevel=WIRE_LEVEL, mtime=0)
        fields = {k: v for k, v in self.__dict__.items() if k != "payload"}
        return _members({**fields, "joules": payload_joules(self.payload), "json_bytes": len(body)}, gz)

    @classmethod
    def load(cls, path: Path) -> Entry:
        doc = json.loads(gzip.decompress(path.read_bytes()))
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in names})


def _members(head: dict[str, Any], gz_body: bytes) -> bytes:
    """The three members; the first says how long the second is."""
    head = {**head, "gzip_bytes": len(gz_body)}
    text = json.dumps(head, separators=(",", ":")).encode()[:-1] + _HEAD_END
    return gzip.compress(text, mtime=0) + gz_body + gzip.compress(b"}", mtime=0)


@dataclass
class Pending:
    """A pending entry as the sender needs it: its fields, and where its body is on disk.

    The body is read only when sent (`gzip_body`), and dropped after: a run holds
    one body per sender, not one per sensor.
    """

    path: Path
    key: str
    sensor: str
    window_start: int
    window_end: int
    attempts: int
    last_error: str
    created: float
    joules: float
    json_bytes: int  # the payload's JSON, uncompressed
    gzip_bytes: int  # the body as sent
    head_bytes: int  # the file's first member: the body starts there (0: a one-member file)

    @classmethod
    def read(cls, path: Path) -> Pending:
        """The first member only (the whole file for an entry in the older one-member layout)."""
        d = zlib.decompressobj(wbits=31)
        text = b""
        with path.open("rb") as fh:
            while not d.eof:
                chunk = fh.read(8192)
                if not chunk:
                    raise ValueError(f"{path}: truncated gzip member")
                text += d.decompress(chunk)
            head_bytes = fh.tell() - len(d.unused_data)
        if text.endswith(_HEAD_END):
            doc = json.loads(text[: -len(_HEAD_END)] + b"}")
        else:  # one member: the entry with its payload
            entry = Entry.load(path)
            doc = {
                **entry.__dict__,
                "joules": payload_joules(entry.payload),
                "json_bytes": len(entry.body()),
                "gzip_bytes": len(entry.gzip_body()),
            }
            head_bytes = 0
        return cls(
            path=path,
            key=doc["key"],
            sensor=doc["sensor"],
            window_start=doc["window_start"],
            window_end=doc["window_end"],
            attempts=doc.get("attempts", 0),
            last_error=doc.get("last_error", ""),
            created=doc.get("created", 0.0),
            joules=doc["joules"],
            json_bytes=doc["json_bytes"],
            gzip_bytes=doc["gzip_bytes"],
            head_bytes=head_bytes,
        )

    def gzip_body(self) -> bytes:
        """The request body: the file's second member as it is on disk."""
        if not self.head_bytes:
            return Entry.load(self.path).gzip_body()
        return _body(self.path.read_bytes(), self.head_bytes, self.gzip_bytes, self.path)

    def head(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "sensor": self.sensor,
            "window_start": self.window_start,
            "window_end": self.window_end,
            "attempts": self.attempts,
            "last_error": self.last_error,
            "created": self.created,
            "joules": self.joules,
            "json_bytes": self.json_bytes,
        }


def _body(data: bytes, start: int, size: int, path: Path) -> bytes:
    """The second member, checked to be followed by the closing one (a whole file)."""
    end = start + size
    try:
        whole = zlib.decompress(data[end:], wbits=31) == b"}"
    except zlib.error:
        whole = False
    if not whole:
        raise ValueError(f"{path}: not a complete outbox entry")
    return data[start:end]


class Outbox:
    def __init__(self, root: Path):
        self.pending_dir = root / "pending"
        self.rejected_dir = root / "rejected"
        self.pending_dir.mkdir(parents=True, exist_ok=True)

    def put(self, entry: Entry) -> Path:
        path = self.pending_dir / entry.filename
        _atomic_write(path, entry.dump())
        return path

    def paths(self) -> list[Path]:
        """The pending files, oldest key first: names only, nothing read."""
        with os.scandir(self.pending_dir) as it:
            names = sorted(e.name for e in it if e.name.endswith(SUFFIX) and not e.name.startswith("."))
        return [self.pending_dir / n for n in names]

    def scan(self) -> Iterator[Pending]:
        """Every pending entry's fields, one file at a time (payloads are not read)."""
        for path in self.paths():
            try:
                yield Pending.read(path)
            except FileNotFoundError:  # landed meanwhile (another run, an operator)
                continue

    def pending(self) -> list[Entry]:
        """Every pending entry with its payload, all in memory: for small outboxes and tests."""
        return [Entry.load(p) for p in self.paths()]

    def has(self, key: str) -> bool:
        return (self.pending_dir / filename(key)).exists()

    def created(self, key: str) -> float:
        """When the pending payload of `key` was first written; 0 if none is pending."""
        try:
            return Pending.read(self.pending_dir / filename(key)).created
        except (OSError, ValueError, KeyError, zlib.error):
            return 0.0

    def keep(self, pending: Pending, attempts: int, error: str) -> None:
        """Record a failed delivery: the same body, more attempts, the last error."""
        pending.attempts, pending.last_error = attempts, error
        if not pending.head_bytes:
            entry = Entry.load(pending.path)
            entry.attempts, entry.last_error = attempts, error
            self.put(entry)
            return
        body = _body(pending.path.read_bytes(), pending.head_bytes, pending.gzip_bytes, pending.path)
        _atomic_write(pending.path, _members(pending.head(), body))

    def done(self, entry: Entry | Pending) -> None:
        (self.pending_dir / filename(entry.key)).unlink(missing_ok=True)

    def reject(self, entry: Entry | Pending, status: int, problem: Any) -> Path:
        full = Entry.load(entry.path) if isinstance(entry, Pending) else entry
        record = {**full.__dict__, "status": status, "problem": problem}
        path = self.rejected_dir / full.filename
        _atomic_write(path, gzip.compress(json.dumps(record).encode(), mtime=0))
        self.done(full)
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
