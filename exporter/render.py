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

from devices.reading import REASONS
from homewatt.contract import (
    APPARENT_POWER,
    DEVICE_INFO,
    DEVICE_LAST_SEEN,
    DEVICE_REJECTED,
    DEVICE_SOURCE_UP,
    ENERGY,
    FORMAT,
    POWER,
    REASON,
    SENSOR,
    SOURCE,
    Metric,
)


def _header(metric: Metric) -> str:
    return f"# HELP {metric.name} {metric.help}\n# TYPE {metric.name} {metric.kind}\n"


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _prefixes(name: str, ids: Sequence[str]) -> list[str]:
    return [f'{name}{{{SENSOR}="{_escape(i)}"}} ' for i in ids]


class FleetRenderer:
    """The modelled sensors' power and energy, then the device sensors' (`device_ids`).

    Device sensors come last in each family, so one family's lines stay together
    as the text format requires; their values are floats (a device's index is in
    Wh with decimals), the model's are integers and keep their integer text.
    """

    def __init__(
        self,
        sensor_ids: Sequence[str],
        device_ids: Sequence[str] = (),
        device_info: Sequence[tuple[str, str, str]] = (),
        source_names: Sequence[str] = (),
    ):
        """`device_info`: (sensor, format, source) per device; `source_names`: the sources in
        the order of the snapshot's `source_up`."""
        self.ids = list(sensor_ids)
        self.device_ids = list(device_ids)
        self._info = _header(DEVICE_INFO) + "".join(
            f'{DEVICE_INFO.name}{{{SENSOR}="{_escape(s)}",{FORMAT}="{_escape(f)}",'
            f'{SOURCE}="{_escape(src)}"}} 1\n'
            for s, f, src in device_info
        )
        self._source_prefix = [f'{DEVICE_SOURCE_UP.name}{{{SOURCE}="{_escape(s)}"}} ' for s in source_names]
        self.skipped = 0  # samples left out by the last render
        self._prefix = {m.name: _prefixes(m.name, self.ids) for m in (POWER, ENERGY)}
        self._device_prefix = {
            m.name: _prefixes(m.name, self.device_ids)
            for m in (POWER, ENERGY, APPARENT_POWER, DEVICE_LAST_SEEN)
        }
        self._rejected_prefix = [
            f'{DEVICE_REJECTED.name}{{{SENSOR}="{_escape(i)}",{REASON}="{reason}"}} '
            for i in self.device_ids
            for reason in REASONS
        ]

    def _lines(self, prefixes: list[str], values: np.ndarray, count_skips: bool = True) -> str:
        """One line per finite, non-negative value; the others are left out (Prometheus shows a gap)."""
        values = np.asarray(values)
        ok = np.isfinite(values) & (values >= 0)
        if not ok.all():
            keep = np.flatnonzero(ok)
            if count_skips:
                self.skipped += int(values.size - keep.size)
            prefixes = [prefixes[i] for i in keep]
            values = values[keep]
        text = map(repr if values.dtype.kind == "f" else str, values.tolist())
        return "".join(map("".join, zip(prefixes, text, repeat("\n"))))

    def render(
        self, power: np.ndarray, energy: np.ndarray, devices: dict[str, np.ndarray] | None = None
    ) -> str:
        """Every family, one line per sensor, without timestamps.

        Prometheus stamps the samples with the scrape time, so a sensor that stops
        reporting goes stale at once (explicit timestamps would disable staleness and
        keep showing its last value for 5 minutes).  Sensors whose values are missing,
        NaN or negative are left out: Prometheus then shows a gap, not a wrong point.
        A device that is stale is left out the same way, but not counted as skipped:
        its silence is what its last-seen gauge (contract.DEVICE_LAST_SEEN) tells.
        """
        parts = []
        self.skipped = 0
        for metric, values, key in ((POWER, power, "power"), (ENERGY, energy, "energy")):
            parts.append(_header(metric))
            parts.append(self._lines(self._prefix[metric.name], values))
            if devices is not None and self.device_ids:
                parts.append(self._lines(self._device_prefix[metric.name], devices[key], count_skips=False))
        if devices is not None and self.device_ids:
            for metric, key in ((APPARENT_POWER, "apparent"), (DEVICE_LAST_SEEN, "last_seen")):
                parts.append(_header(metric))
                parts.append(self._lines(self._device_prefix[metric.name], devices[key], count_skips=False))
            parts.append(_header(DEVICE_REJECTED))
            parts.append(self._lines(self._rejected_prefix, devices["rejected"].ravel(), count_skips=False))
            parts.append(self._info)
            parts.append(_header(DEVICE_SOURCE_UP))
            parts.append(self._lines(self._source_prefix, devices["source_up"], count_skips=False))
        return "".join(parts)
