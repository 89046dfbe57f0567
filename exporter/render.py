"""Prometheus text exposition for a whole fleet, written as one string.

client_python's registry builds a Sample object per child and formats each in
Python; for 10,000 sensors that is ~60 ms a scrape, too slow for a 1 s scrape
interval.  Here the label part of every line is built once, and a scrape only
fills the current values in (benchmarks/exporter_render.py):
- a family whose values are all servable is one `%`-format of a template made of
  its prefixes, which formats each number as str()/repr() would, at C speed;
- the modelled sensors' lines can be rendered ahead of the scrape (`modelled`,
  exporter/ahead.py), since they depend on the second only;
- what rarely changes (the devices' rejection counts, the sources' state) is
  rendered again only when it changed, and the device info never;
- the text comes out as pieces, those known ahead already compressed, so that a
  gzipped scrape compresses only what it made (exporter/gzipped.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from devices.reading import REASONS
from exporter.gzipped import Part, plain
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

REJECTED_CHUNK = 64  # devices whose rejection counts are rendered and compressed together


def _header(metric: Metric) -> str:
    return f"# HELP {metric.name} {metric.help}\n# TYPE {metric.name} {metric.kind}\n"


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _prefixes(name: str, ids: Sequence[str]) -> list[str]:
    return [f'{name}{{{SENSOR}="{_escape(i)}"}} ' for i in ids]


class _Lines:
    """One run of lines `prefix value`: the prefixes fixed, the values given at each render."""

    def __init__(self, prefixes: list[str]):
        self.prefixes = prefixes
        # Templates by (float values?, which lines are served): every prefix followed by a
        # conversion, %r being repr() of a float and %d str() of an int.  Which values are
        # servable changes rarely (a device going silent), so a few are kept.
        self._templates: dict[tuple[bool, bytes], str] = {}

    def _template(self, floats: bool, ok: np.ndarray | None) -> str:
        key = (floats, b"" if ok is None else np.packbits(ok).tobytes())
        template = self._templates.get(key)
        if template is None:
            spec = "%r\n" if floats else "%d\n"
            served = self.prefixes if ok is None else [self.prefixes[i] for i in np.flatnonzero(ok)]
            template = "".join(p.replace("%", "%%") + spec for p in served)
            if len(self._templates) >= 4:
                self._templates = {k: v for k, v in self._templates.items() if not k[1]}
            self._templates = {**self._templates, key: template}
        return template

    def text(self, values: np.ndarray) -> tuple[str, int]:
        """One line per finite, non-negative value, and how many were left out (Prometheus
        then shows a gap, not a wrong point)."""
        values = np.asarray(values)
        floats = values.dtype.kind == "f"
        ok = np.isfinite(values) & (values >= 0)
        if ok.all():
            return self._template(floats, None) % tuple(values.tolist()), 0
        return self._template(floats, ok) % tuple(values[ok].tolist()), int(values.size - ok.sum())


class _Cached:
    """Lines whose values rarely change, in chunks of `chunk` lines: a chunk is rendered (and
    compressed) again only when one of its values changed."""

    def __init__(self, prefixes: list[str], chunk: int):
        self.chunks = [_Lines(prefixes[i : i + chunk]) for i in range(0, len(prefixes), chunk)]
        self.size = chunk
        self._last: list[tuple[np.ndarray, Part] | None] = [None] * len(self.chunks)

    def parts(self, values: np.ndarray) -> list[Part]:
        out = []
        for k, lines in enumerate(self.chunks):
            chunk = values[k * self.size : (k + 1) * self.size]
            last = self._last[k]
            if last is None or not np.array_equal(last[0], chunk):
                last = (np.array(chunk), Part(lines.text(chunk)[0].encode()))
                self._last[k] = last
            out.append(last[1])
        return out


@dataclass(frozen=True)
class Modelled:
    """The modelled sensors' lines of one second: power, energy, and the values left out."""

    power: Part
    energy: Part
    skipped: int


Piece = Part | bytes  # text compressed ahead (exporter/gzipped.py), or made by this scrape


class FleetRenderer:
    """The modelled sensors' power and energy, then the device sensors' (`device_ids`).

    Device sensors come last in each family, so one family's lines stay together
    as the text format requires; their values are floats (a device's index is in
    Wh with decimals), the model's are integers and keep their integer text.
    Safe to call from several scrapes at once: a cache entry is replaced whole.
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
        info = "".join(
            f'{DEVICE_INFO.name}{{{SENSOR}="{_escape(s)}",{FORMAT}="{_escape(f)}",'
            f'{SOURCE}="{_escape(src)}"}} 1\n'
            for s, f, src in device_info
        )
        self._info = Part((_header(DEVICE_INFO) + info).encode())
        self._headers = {
            m.name: _header(m).encode()
            for m in (POWER, ENERGY, APPARENT_POWER, DEVICE_LAST_SEEN, DEVICE_REJECTED, DEVICE_SOURCE_UP)
        }
        self.skipped = 0  # samples left out by the last render
        self._model = {m.name: _Lines(_prefixes(m.name, self.ids)) for m in (POWER, ENERGY)}
        self._device = {
            m.name: _Lines(_prefixes(m.name, self.device_ids))
            for m in (POWER, ENERGY, APPARENT_POWER, DEVICE_LAST_SEEN)
        }
        rejected = [
            f'{DEVICE_REJECTED.name}{{{SENSOR}="{_escape(i)}",{REASON}="{reason}"}} '
            for i in self.device_ids
            for reason in REASONS
        ]
        self._rejected = _Cached(rejected, REJECTED_CHUNK * len(REASONS))
        sources = [f'{DEVICE_SOURCE_UP.name}{{{SOURCE}="{_escape(s)}"}} ' for s in source_names]
        self._sources = _Cached(sources, max(1, len(sources)))

    def modelled(self, power: np.ndarray, energy: np.ndarray) -> Modelled:
        """The modelled sensors' lines for these values (NaN or negative: left out, counted)."""
        p, p_skipped = self._model[POWER.name].text(power)
        e, e_skipped = self._model[ENERGY.name].text(energy)
        return Modelled(Part(p.encode()), Part(e.encode()), p_skipped + e_skipped)

    def render(
        self, power: np.ndarray, energy: np.ndarray, devices: dict[str, np.ndarray] | None = None
    ) -> str:
        """Every family, one line per sensor, without timestamps (`skipped` says how many
        modelled values were left out)."""
        modelled = self.modelled(power, energy)
        self.skipped = modelled.skipped
        return plain(self.pieces(modelled, devices)).decode()

    def pieces(self, modelled: Modelled, devices: dict[str, np.ndarray] | None = None) -> list[Piece]:
        """The whole text in order: the modelled lines given, the devices' from their snapshot.

        Prometheus stamps the samples with the scrape time, so a sensor that stops
        reporting goes stale at once (explicit timestamps would disable staleness and
        keep showing its last value for 5 minutes).  Sensors whose values are missing,
        NaN or negative are left out: Prometheus then shows a gap, not a wrong point.
        A device that is stale is left out the same way, but not counted as skipped:
        its silence is what its last-seen gauge (contract.DEVICE_LAST_SEEN) tells.
        """
        with_devices = devices is not None and bool(self.device_ids)
        head = self._headers
        out: list[Piece] = []
        for name, part, key in (
            (POWER.name, modelled.power, "power"),
            (ENERGY.name, modelled.energy, "energy"),
        ):
            out += [head[name], part]
            if with_devices:
                assert devices is not None
                out.append(self._device[name].text(devices[key])[0].encode())
        if with_devices:
            assert devices is not None
            for name, key in ((APPARENT_POWER.name, "apparent"), (DEVICE_LAST_SEEN.name, "last_seen")):
                out += [head[name], self._device[name].text(devices[key])[0].encode()]
            out += [head[DEVICE_REJECTED.name], *self._rejected.parts(devices["rejected"].ravel())]
            out += [self._info, head[DEVICE_SOURCE_UP.name], *self._sources.parts(devices["source_up"])]
        return out
