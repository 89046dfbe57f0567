"""Prometheus shards: which sensor each one keeps, and what marks its data.

Past one machine's worth of sensors (docs/capacity.md), `HOMEWATT_SHARDS=N`
runs N Prometheus servers that all scrape the exporter and the Pushgateway and
each keep only their share of the sensors: `hashmod` relabelling on the
`sensor` label, after the scrape.  Series without a sensor (the exporter's own
process metrics) land in the one shard that the empty label value hashes to,
so nothing is stored twice.

Each shard adds `homewatt_shard: "<i>"` to its external labels, so its sidecar
and its Ruler upload blocks of their own.  Thanos Query treats that label as a
replica label, like the stream label: the backfilled history (written once,
without a shard) and a sensor's live series (in its one shard) are one series,
and the dashboards and the nightly job read the same numbers as with one
Prometheus.  A shard that is down makes Query answer with an error (the History
datasource and the job refuse partial answers), never a smaller total.

`shard_of` reproduces Prometheus's hashmod (relabel.go: the md5 of the label
value, its last 8 bytes as a big-endian integer, modulo N), so tests, the
Ruler's rule copies and the docs can say in advance where a sensor lives.
"""

from __future__ import annotations

import hashlib
from typing import Any

from homewatt.contract import SENSOR, SHARD_LABEL

TMP_LABEL = "__tmp_homewatt_shard"


def shard_of(sensor: str, shards: int) -> int:
    return int.from_bytes(hashlib.md5(sensor.encode()).digest()[8:], "big") % shards


def keep_own(shard: int, shards: int) -> list[dict[str, Any]]:
    """metric_relabel_configs keeping the shard's sensors (and the sensor-less series if they hash here).

    The hash goes into a temporary label that is dropped again: unlike target
    relabelling, metric relabelling keeps `__`-prefixed labels, and a stored one would
    split each sensor's live series from its backfilled history.
    """
    return [
        {"source_labels": [SENSOR], "modulus": shards, "target_label": TMP_LABEL, "action": "hashmod"},
        {"source_labels": [TMP_LABEL], "regex": str(shard), "action": "keep"},
        {"regex": TMP_LABEL, "action": "labeldrop"},
    ]


def labels(shard: int, shards: int) -> dict[str, str]:
    """The shard's external label; none with a single Prometheus (the default's data stays as it was)."""
    return {} if shards == 1 else {SHARD_LABEL: str(shard)}


def check(shards: int) -> int:
    if shards < 1:
        raise ValueError(f"HOMEWATT_SHARDS must be 1 or more, not {shards}")
    return shards
