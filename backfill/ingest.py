"""Turn one chunk's OpenMetrics into TSDB blocks and move them to their target.

promtool writes into a private staging directory; blocks then enter the target
directory by rename (atomic on one filesystem), so neither Prometheus nor a
Thanos upload ever sees a half-written block.  The journal records which blocks
a chunk produced before they move and marks the chunk done after: a run killed
at any point resumes without writing a chunk twice.

Every block carries a Thanos section in its meta.json with the external labels
of its stream (homewatt/streams.py); Prometheus ignores it, Thanos reads it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backfill.plan import Chunk
from homewatt.contract import RAW_STREAM, STREAMS
from homewatt.procs import die_with_parent

THANOS_SOURCE = "homewatt-backfill"


class IngestError(RuntimeError):
    pass


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


@dataclass
class Journal:
    """Backfill state, rewritten atomically on every change."""

    path: Path
    state: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Journal:
        if path.exists():
            return cls(path, json.loads(path.read_text()))
        return cls(path, {"done": {}, "moving": {}})

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".state-")
        with os.fdopen(fd, "w") as fh:
            json.dump(self.state, fh, indent=1, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    @property
    def done(self) -> dict[str, Any]:
        return self.state["done"]

    @property
    def moving(self) -> dict[str, Any]:
        return self.state["moving"]


def promtool_blocks(text_file: Path, out_dir: Path, block_seconds: int) -> list[Path]:
    """Run promtool's OpenMetrics import; return the block directories it wrote."""
    return promtool_run(text_file, out_dir, block_seconds)[0]


def promtool_run(text_file: Path, out_dir: Path, block_seconds: int) -> tuple[list[Path], int]:
    """`promtool_blocks`, and promtool's peak resident memory in bytes: it holds a block's
    samples in memory, which is what bounds a chunk's size (backfill/plan.py)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        "promtool",
        "tsdb",
        "create-blocks-from",
        "openmetrics",
        f"--max-block-duration={block_seconds // 3600}h",
        "--quiet",
        str(text_file),
        str(out_dir),
    ]
    # promtool dies with the backfill (SIGKILL included): no orphan keeps writing into staging.
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, preexec_fn=die_with_parent)
        try:
            _, status, usage = os.wait4(proc.pid, 0)  # wait() would not tell the memory
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            stderr = err.read().decode(errors="replace").strip()
            raise IngestError(f"promtool failed on {text_file.name}: {stderr[-2000:]}")
    blocks = sorted(p for p in out_dir.iterdir() if p.is_dir() and (p / "meta.json").exists())
    return blocks, usage.ru_maxrss * 1024  # kB on Linux


def label_block(block: Path, labels: dict[str, str]) -> None:
    """Give a promtool block the Thanos metadata a sidecar would give it."""
    meta_file = block / "meta.json"
    meta = json.loads(meta_file.read_text())
    meta["thanos"] = {
        "version": 1,
        "labels": dict(sorted(labels.items())),
        "downsample": {"resolution": 0},
        "source": THANOS_SOURCE,
        "segment_files": sorted(p.name for p in (block / "chunks").iterdir()),
    }
    tmp = meta_file.with_name("meta.json.tmp")
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, meta_file)


@dataclass(frozen=True)
class Target:
    """Where blocks go: Prometheus's TSDB directory for every stream (native), or a
    directory per stream (``ROOT/raw``, ``ROOT/quarter``), each ready for
    ``thanos tools bucket upload-blocks``, which sets one stream's labels per call."""

    root: Path
    per_stream: bool = False

    def dir(self, stream: str) -> Path:
        return self.root / stream if self.per_stream else self.root

    def dirs(self) -> list[Path]:
        return [self.dir(s) for s in STREAMS] if self.per_stream else [self.root]


def _entry(entry: str) -> tuple[str, str]:
    """A journal block entry "stream/ULID" (a bare ULID is a raw block of an older journal)."""
    stream, _, ulid = entry.rpartition("/")
    return stream or RAW_STREAM, ulid


class Ingester:
    """Writes chunks into their target through staging, recording each step."""

    def __init__(
        self,
        target: Target,
        work: Path,
        journal: Journal,
        labels: dict[str, dict[str, str]] | None = None,
    ):
        self.target = target
        self.staging = work / "staging"
        self.journal = journal
        self.labels = labels or {}
        self.lock = threading.Lock()

    def recover(self) -> list[str]:
        """Finish moves a killed run left half done; drop staging leftovers."""
        finished = []
        for chunk_id, info in list(self.journal.moving.items()):
            for entry in info["blocks"]:
                stream, ulid = _entry(entry)
                src = self.staging / chunk_id / entry
                dst = self.target.dir(stream) / ulid
                if src.exists() and not dst.exists():
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    os.rename(src, dst)
            self.journal.done[chunk_id] = info
            del self.journal.moving[chunk_id]
            finished.append(chunk_id)
        self.journal.save()
        if self.staging.exists():
            # Rename first: whatever a dying process still writes lands in the trash.
            trash = self.staging.with_name(f".staging-trash-{os.getpid()}")
            os.rename(self.staging, trash)
            shutil.rmtree(trash, ignore_errors=True)
        return finished

    def stage(self, chunk: Chunk) -> Path:
        """A fresh staging directory for `chunk`; its input files go to STAGE/<stream>/input.om."""
        stage = self.staging / chunk.id
        if stage.exists():
            shutil.rmtree(stage)
        stage.mkdir(parents=True)
        return stage

    def ingest(
        self, chunk: Chunk, inputs: dict[str, Path], samples: int, block_seconds: int
    ) -> dict[str, Any]:
        """One chunk, one input file per stream (in its stage): promtool, label, then move every
        block."""
        stage = self.staging / chunk.id
        entries: list[str] = []
        peak = 0
        for stream, text_file in inputs.items():
            blocks, rss = promtool_run(text_file, stage / stream / "blocks", block_seconds)
            peak = max(peak, rss)
            text_file.unlink()
            for b in blocks:
                label_block(b, self.labels.get(stream, {}))
                os.rename(b, stage / stream / b.name)
                entries.append(f"{stream}/{b.name}")
        info = {
            "blocks": entries,
            "samples": samples,
            "bytes": sum(dir_bytes(stage / e) for e in entries),
            "promtool_rss": peak,
        }
        for d in self.target.dirs():
            d.mkdir(parents=True, exist_ok=True)
        with self.lock:
            self.journal.moving[chunk.id] = info
            self.journal.save()
            for e in entries:
                stream, ulid = _entry(e)
                os.rename(stage / e, self.target.dir(stream) / ulid)
            self.journal.done[chunk.id] = info
            del self.journal.moving[chunk.id]
            self.journal.save()
        shutil.rmtree(stage)
        return info
