"""Generated fleets for benchmarks and scale tests, and the fleet file that serves them.

A big fleet is the default fleet's synthetic homes taken in turn, each copy with
an id of its own and a seed derived from that id (so a sensor is the same home
whoever generates it), run by the same load model.  The replayed household is
left out: one recording played by thousands of homes is no fleet, and its
per-sensor replay lookups would make the model step cost what no real fleet
costs.  The last `devices` sensors are real-meter entries across Shelly Gen2
(four metering components), Tasmota and Linky TIC (both modes, on serial ports), marked
`simulated` so that `python -m devices.simulate` (which `make up` starts) feeds
them from the same model.

`write_fleet` writes any such fleet as a fleet file that `load_fleet`, the
exporter, the backfill and `make up` read back to the same sensors.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import zlib
from pathlib import Path
from typing import Any

import yaml

from homewatt.fleet import DEFAULT_TIMEZONE, Device, Sensor, load_fleet, parse_fleet

LOCAL_BROKER = "mqtt://127.0.0.1:1883"
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# One cycle of 20 device kinds: 55 % Shelly Gen2 (plug/relay, PM mini, Pro 3EM, Pro EM),
# 35 % Tasmota plugs, 10 % Linky TIC (standard and historic mode).  A TIC is a serial
# port on the exporter's machine, and pyserial waits on it with select(), which takes
# no descriptor above 1023 (5 per open port): a few hundred ports per exporter at most.
DEVICE_CYCLE: tuple[tuple[str, str], ...] = (
    *(("shelly", "switch:0"),) * 5,
    *(("shelly", "pm1:0"),) * 2,
    *(("shelly", "em:0"),) * 2,
    *(("shelly", "em1:0"),) * 2,
    *(("tasmota", ""),) * 7,
    ("tic", "standard"),
    ("tic", "historic"),
)


def seed_of(sensor_id: str) -> int:
    """A sensor's seed from its id alone, as the fleet file does for a device entry without one."""
    return zlib.crc32(sensor_id.encode()) & 0x7FFFFFFF


def synthetic_homes() -> tuple[Sensor, ...]:
    """The default fleet's modelled homes (neither a replay nor a device)."""
    return tuple(s for s in load_fleet().sensors if s.replay is None and s.device is None)


def device_of(index: int, sensor_id: str, broker: str) -> Device:
    """The `index`-th device of a generated fleet (DEVICE_CYCLE in turn)."""
    fmt, detail = DEVICE_CYCLE[index % len(DEVICE_CYCLE)]
    if fmt == "shelly":
        return Device(
            format=fmt, broker=broker, topic=f"shelly-{sensor_id}", component=detail, simulated=True
        )
    if fmt == "tasmota":
        # TelePeriod 10 s (the simulator's default): a staleness limit above it.
        return Device(
            format=fmt, broker=broker, topic=f"tasmota-{sensor_id}", stale_after_s=15, simulated=True
        )
    return Device(format=fmt, port=f"tic/{sensor_id}", mode=detail, simulated=True)


def big_fleet(
    n: int, index_date: dt.date, devices: int = 0, broker: str = LOCAL_BROKER
) -> tuple[Sensor, ...]:
    """`n` sensors `b-000000`..: the first `n - devices` modelled, the last `devices` real meters.

    Every sensor's index is read on `index_date`: a date near the instants used keeps
    the energy ledger cheap.
    """
    if not 0 <= devices <= n:
        raise ValueError(f"{devices} devices in a fleet of {n}")
    homes = synthetic_homes()
    out = []
    for i in range(n):
        sid = f"b-{i:06d}"
        k = i - (n - devices)
        device = device_of(k, sid, broker) if k >= 0 else None
        home = homes[i % len(homes)]
        out.append(dataclasses.replace(home, id=sid, seed=seed_of(sid), index_date=index_date, device=device))
    return tuple(out)


def _short(obj: Any) -> dict[str, Any]:
    """A dataclass as a mapping of the fields that differ from their defaults (the file stays
    small: a fleet of 10,000 takes seconds to parse, not tens of seconds)."""
    out = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if value != default:
            out[f.name] = _short(value) if dataclasses.is_dataclass(value) else value
    return out


def _entry(sensor: Sensor) -> dict[str, Any]:
    """A sensor as the fleet file spells it: no per-sensor timezone, defaults left out."""
    raw = _short(sensor)
    raw.pop("timezone", None)
    raw["index_date"] = sensor.index_date.isoformat()
    return raw


def write_fleet(path: Path, sensors: tuple[Sensor, ...], timezone: str = DEFAULT_TIMEZONE) -> Path:
    """Write `sensors` as a fleet file (`--fleet`, HOMEWATT_FLEET) and check it reads back the same."""
    doc = {"timezone": timezone, "sensors": [_entry(s) for s in sensors]}
    text = yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=200, default_flow_style=None)
    path.write_text(text)
    # What load_fleet does, with libyaml's parser where it is there (same document, faster).
    if parse_fleet(yaml.load(text, Loader=_Loader), str(path)).sensors != tuple(
        dataclasses.replace(s, timezone=timezone) for s in sensors
    ):
        raise AssertionError(f"{path} does not read back as the fleet written")
    return path
