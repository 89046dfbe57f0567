"""The two block streams of homewatt's long-term store, and their external labels.

Thanos keeps one retention per resolution for all the blocks of a stream (blocks
with the same external labels), so data that must live for different times goes
into different streams:

- ``raw``: everything Prometheus scrapes and the 1m rules (uploaded by the
  sidecar), plus the backfilled per-second data.  Raw resolution expires after
  weeks; its 5m and 1h downsamples stay three years.
- ``quarter``: the 15m recorded series (evaluated by the Thanos Ruler in the
  Docker stack) and the energy counter at every quarter-hour of the backfilled
  span.  Kept three years at full resolution, never downsampled.

Both carry Prometheus's own external labels, with ``homewatt_stream`` set to the
stream's name.  Thanos Query treats ``homewatt_stream`` as a replica label, so
queries see one set of series, exactly as the native Prometheus shows them.
The labels come from the Prometheus configuration file itself, so blocks made by
the backfill carry the same labels as the blocks the sidecar uploads.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from homewatt import promconfig
from homewatt.contract import RAW_STREAM, STREAM_LABEL, STREAMS

DEFAULT_CONFIG = promconfig.SOURCE


class StreamError(ValueError):
    pass


def external_labels(config: Path = DEFAULT_CONFIG) -> dict[str, str]:
    doc = yaml.safe_load(Path(config).read_text())
    labels = {str(k): str(v) for k, v in ((doc.get("global") or {}).get("external_labels") or {}).items()}
    if labels.get(STREAM_LABEL) != RAW_STREAM:
        raise StreamError(f"{config}: global.external_labels must set {STREAM_LABEL}: {RAW_STREAM}")
    return labels


def stream_labels(stream: str, config: Path = DEFAULT_CONFIG) -> dict[str, str]:
    if stream not in STREAMS:
        raise StreamError(f"unknown stream {stream!r}")
    return {**external_labels(config), STREAM_LABEL: stream}


def label_flags(labels: dict[str, str]) -> list[str]:
    """Thanos's `--label` syntax: one `name="value"` per label, sorted."""
    return [f'--label={k}="{v}"' for k, v in sorted(labels.items())]
