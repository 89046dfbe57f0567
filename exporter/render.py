"""Prometheus text exposition for a whole fleet, written as one string.

client_python's registry builds a Sample object per child and formats each in
Python; for 10,000 sensors that is ~60 ms a scrape, too slow for a 1 s scrape
interval.  Here the label part of every line is built once, and a scrape only
joins the prefixes with the current values (benchmarks/exporter_render.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import repeat

import numpy as np

from homewatt.contract import ENERGY, POWER, SENSOR, Metric


def _header(metric: Metric) -> str:
    return f"# HELP {metric.name} {metric.help}\n# TYPE {metric.name} {metric.kind}\n"


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


class FleetRenderer:
    def __init__(self, sensor_ids: Sequence[str]):
        self.ids = list(sensor_ids)
        self.skipped = 0  # samples left out by the last render
        self._prefix = {
            m.name: [f'{m.name}{{{SENSOR}="{_escape(i)}"}} ' for i in self.ids] for m in (POWER, ENERGY)
        }

    def render(self, power: np.ndarray, energy: np.ndarray) -> str:
        """Both families, one line per sensor, without timestamps.

        Prometheus stamps the samples with the scrape time, so a sensor that stops
        reporting goes stale at once (explicit timestamps would disable staleness and
        keep showing its last value for 5 minutes).  Sensors whose values are missing,
        NaN or negative are left out: Prometheus then shows a gap, not a wrong point.
        """
        parts = []
        self.skipped = 0
        for metric, values in ((POWER, power), (ENERGY, energy)):
            values = np.asarray(values)
            ok = np.isfinite(values) & (values >= 0)
            prefixes = self._prefix[metric.name]
            if not ok.all():
                keep = np.flatnonzero(ok)
                self.skipped += int(values.size - keep.size)
                prefixes = [prefixes[i] for i in keep]
                values = values[keep]
            text = map(repr if values.dtype.kind == "f" else str, values.tolist())
            parts.append(_header(metric))
            parts.append("".join(map("".join, zip(prefixes, text, repeat("\n")))))
        return "".join(parts)
