"""A bucket filled as `make up` fills it, and a native Prometheus over the same blocks:
shared by tests/test_thanos.py and benchmarks/thanos_tiers.py."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

from backfill.__main__ import options_from_argv
from backfill.api import backfill as run_backfill
from backfill.api import upload, upload_commands
from backfill.run import Summary
from homewatt import streams
from homewatt.contract import STREAMS
from stack.thanos import BINARY

# name -> (end of the raw window, raw days, history days); each part is one backfill.
Parts = dict[str, tuple[dt.datetime, float, float]]

# The waits and retentions a test bucket runs with: nothing waits, nothing expires.
TEST_TIMINGS = dict(
    consistency_delay="0s",
    compact_interval="2s",
    store_sync="2s",
    delete_delay="0s",
    ignore_marked_after="0s",
    raw_retention="0d",
    downsampled_retention="0d",
    quarter_retention="0d",
)


def write_part(
    data: Path, fleet_file: Path, end: dt.datetime, raw_days: float, history_days: float, out: Path
) -> Summary:
    """One backfill into out/{raw,quarter}, not uploaded."""
    return run_backfill(
        options_from_argv(
            [
                *("--data", str(data), "--fleet", str(fleet_file), "--end", end.isoformat()),
                *("--raw-days", str(raw_days), "--history-days", str(history_days), "--no-progress"),
                *("--bucket-dir", str(out)),
            ]
        )
    )


def fill(root: Path, data: Path, fleet_file: Path, parts: Parts, objstore: Path) -> dict[str, Summary]:
    """Backfill each part into root/<name>/{raw,quarter} and upload it with bin/thanos."""
    labels = {s: streams.stream_labels(s) for s in STREAMS}
    summaries = {}
    for name, (end, raw_days, history_days) in parts.items():
        summary = write_part(data, fleet_file, end, raw_days, history_days, root / name)
        upload(upload_commands(summary.target, objstore, labels, str(BINARY)))
        summaries[name] = summary
    return summaries


def reference_tsdb(root: Path, parts: Parts, tsdb: Path) -> Path:
    """A Prometheus TSDB directory holding a copy of every block the parts wrote."""
    tsdb.mkdir(parents=True)
    for name in parts:
        for stream in STREAMS:
            for block in (root / name / stream).iterdir():
                if (block / "meta.json").exists():
                    shutil.copytree(block, tsdb / block.name)
    return tsdb
