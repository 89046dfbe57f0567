"""Turn one chunk's OpenMetrics into TSDB blocks and move them into Prometheus's data dir.

promtool writes into a private staging directory; blocks then enter the TSDB
directory by rename (atomic on one filesystem), so Prometheus never sees a
half-written block.  The journal records which blocks a chunk produced before
they move and marks the chunk done after: a run killed at any point resumes
without writing a chunk twice.
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
from homewatt.supervisor import die_with_parent


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
    proc = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=die_with_parent)
    if proc.returncode != 0:
        raise IngestError(f"promtool failed on {text_file.name}: {proc.stderr.strip()[-2000:]}")
    blocks = sorted(p for p in out_dir.iterdir() if p.is_dir() and (p / "meta.json").exists())
    return blocks


class Ingester:
    """Writes chunks into a TSDB directory through staging, recording each step."""

    def __init__(self, tsdb: Path, work: Path, journal: Journal):
        self.tsdb = tsdb
        self.staging = work / "staging"
        self.journal = journal
        self.lock = threading.Lock()

    def recover(self) -> list[str]:
        """Finish moves a killed run left half done; drop staging leftovers."""
        finished = []
        for chunk_id, info in list(self.journal.moving.items()):
            for ulid in info["blocks"]:
                src = self.staging / chunk_id / ulid
                if src.exists() and not (self.tsdb / ulid).exists():
                    os.rename(src, self.tsdb / ulid)
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

    def ingest(self, chunk: Chunk, text: bytes, samples: int, block_seconds: int) -> dict[str, Any]:
        stage = self.staging / chunk.id
        if stage.exists():
            shutil.rmtree(stage)
        stage.mkdir(parents=True)
        text_file = stage / "input.om"
        text_file.write_bytes(text)
        del text
        blocks = promtool_blocks(text_file, stage / "blocks", block_seconds)
        text_file.unlink()
        for b in blocks:
            os.rename(b, stage / b.name)
        info = {
            "blocks": [b.name for b in blocks],
            "samples": samples,
            "bytes": sum(dir_bytes(stage / b.name) for b in blocks),
        }
        self.tsdb.mkdir(parents=True, exist_ok=True)
        with self.lock:
            self.journal.moving[chunk.id] = info
            self.journal.save()
            for b in blocks:
                os.rename(stage / b.name, self.tsdb / b.name)
            self.journal.done[chunk.id] = info
            del self.journal.moving[chunk.id]
            self.journal.save()
        shutil.rmtree(stage)
        return info
