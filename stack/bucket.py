"""The filesystem bucket's size and blocks, for the Fleet health dashboard.

Thanos serves no gauge of what its bucket holds, so the native stack's runner
reads each block's meta.json (Thanos lists every file with its size there) at
each scrape and serves the totals per block stream and resolution.  Blocks
marked for deletion are left out: they are gone once the delete delay passes.
The Docker stack's bucket is MinIO, whose own metrics tell its size.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily, Metric

from homewatt.contract import BUCKET_BLOCKS, BUCKET_BYTES, RESOLUTION, STREAM, STREAM_LABEL

# Thanos's resolutions, in ms, by the name the dashboards show.
RESOLUTIONS = {0: "raw", 300_000: "5m", 3_600_000: "1h"}


def usage(bucket: Path) -> tuple[Counter[tuple[str, str]], Counter[tuple[str, str]]]:
    """(bytes, blocks) per (stream, resolution) of the blocks in `bucket`."""
    size: Counter[tuple[str, str]] = Counter()
    blocks: Counter[tuple[str, str]] = Counter()
    for meta_path in bucket.glob("*/meta.json"):
        if (meta_path.parent / "deletion-mark.json").exists():
            continue
        try:
            thanos = json.loads(meta_path.read_text())["thanos"]
        except (OSError, ValueError, KeyError):
            continue  # a block being uploaded or deleted right now: next scrape
        resolution = int(thanos.get("downsample", {}).get("resolution", 0))
        key = (thanos.get("labels", {}).get(STREAM_LABEL, ""), RESOLUTIONS.get(resolution, str(resolution)))
        size[key] += sum(int(f.get("size_bytes", 0)) for f in thanos.get("files", []))
        blocks[key] += 1
    return size, blocks


class BucketCollector:
    def __init__(self, bucket: Path):
        self.bucket = bucket

    def collect(self) -> Iterator[Metric]:
        size, blocks = usage(self.bucket)
        labels = [STREAM, RESOLUTION]
        nbytes = GaugeMetricFamily(BUCKET_BYTES.name, BUCKET_BYTES.help, labels=labels)
        count = GaugeMetricFamily(BUCKET_BLOCKS.name, BUCKET_BLOCKS.help, labels=labels)
        for key in sorted(size):
            nbytes.add_metric(list(key), size[key])
            count.add_metric(list(key), blocks[key])
        yield nbytes
        yield count
