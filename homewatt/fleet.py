"""The sensor fleet: which homes exist and what each one is made of.

The fleet file is the single description of the homes that the exporter serves
live and the backfill writes into history; both load it through `load_fleet`,
so they can never disagree about a sensor.  Validation is strict on purpose: a
typo in a key would otherwise silently fall back to a default and produce a
plausible-looking but wrong home.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DEFAULT_FLEET = Path(__file__).with_name("fleet.yaml")
SENSOR_ID = re.compile(r"[a-z0-9-]{1,64}")
HEATING_TYPES = ("none", "electric", "heat_pump")
DEVICE_FORMATS = ("shelly", "tasmota", "tic")
TIC_MODES = ("historic", "standard")
MQTT_SCHEMES = ("mqtt", "tcp")
DEFAULT_STALE_AFTER_S = 10.0
DEVICE_INDEX_DATE = dt.date(2026, 1, 1)  # a device entry's model anchor when it gives none (simulator only)


class FleetError(ValueError):
    """A fleet file that cannot be trusted; the message names the bad entry."""


# Where the homes are when the fleet file does not say: local time drives the load model,
# the nightly window (30 local days to local midnight) and the dashboards.
DEFAULT_TIMEZONE = "Europe/Paris"


@dataclass(frozen=True)
class Heating:
    type: str = "none"
    rated_w: int = 0  # electric: convectors' total power; heat pump: max electrical draw
    loss_w_per_k: float = 0.0  # how much heat the home loses per kelvin of indoor/outdoor gap
    setpoint_c: float = 19.5
    night_setpoint_c: float = 17.0


@dataclass(frozen=True)
class WaterHeater:
    power_w: int = 2400
    litres: int = 200


@dataclass(frozen=True)
class Replay:
    """Play recorded minutes instead of the model (homewatt/replay.py)."""

    dataset: str
    start: dt.datetime  # when the data's first minute plays (the data then loops)

    @property
    def start_ts(self) -> int:
        return int(self.start.timestamp())


@dataclass(frozen=True)
class Device:
    """A real meter that reports this sensor, instead of the load model (devices/).

    MQTT devices name their broker and topic; a Linky names its serial port.  A
    relative `port` is under the data directory, where the simulator links its
    pseudo-terminal.  `max_power_w` bounds a plausible reading; left out, a Linky's
    own subscribed power is used, and for MQTT devices 36 kVA (the largest
    French household subscription).
    """

    format: str  # shelly | tasmota | tic
    broker: str | None = None  # MQTT: mqtt://[user:password@]host:port
    topic: str | None = None  # Shelly: the topic prefix (its device id); Tasmota: its %topic%
    component: str = "switch:0"  # Shelly: which meter channel (switch:0, pm1:0, em:0, em1:1, ...)
    port: str | None = None  # TIC: the serial device of the USB dongle
    mode: str = "standard"  # TIC: historic (1200 baud) or standard (9600 baud)
    stale_after_s: float = DEFAULT_STALE_AFTER_S  # silent longer than this: the sensor drops out of scrapes
    max_power_w: float | None = None
    simulated: bool = False  # fed by `python -m devices.simulate` (make up starts it), not by hardware

    @property
    def is_mqtt(self) -> bool:
        return self.format != "tic"


@dataclass(frozen=True)
class Sensor:
    id: str
    home: str
    seed: int
    index_date: dt.date  # the day the meter's index was read ...
    index_kwh: float  # ... and what it read at 00:00 UTC that day
    occupants: int = 2
    base_w: int = 90
    noise_w: int = 15
    fridge_w: int = 110
    cooking_w: int = 2000
    lighting_w: int = 150
    electronics_w: int = 120
    washing_per_week: float = 3.0
    dishwasher_per_week: float = 3.0
    home_at_lunch: float = 0.3  # probability that someone cooks lunch on a weekday
    heating: Heating = field(default_factory=Heating)
    water_heater: WaterHeater | None = None
    replay: Replay | None = None
    device: Device | None = None  # a real meter reports it; the model only feeds its simulator
    timezone: str = DEFAULT_TIMEZONE  # set from the fleet's timezone, not per sensor

    @property
    def index_day(self) -> int:
        """The index reading's UTC day number (days since 1970-01-01)."""
        return (self.index_date - dt.date(1970, 1, 1)).days

    @property
    def index_joules(self) -> int:
        return round(self.index_kwh * 3.6e6)


@dataclass(frozen=True)
class Fleet:
    timezone: str
    sensors: tuple[Sensor, ...]

    def __len__(self) -> int:
        return len(self.sensors)

    def ids(self) -> list[str]:
        return [s.id for s in self.sensors]

    @property
    def modelled(self) -> tuple[Sensor, ...]:
        """The sensors the load model (or a replay) produces: these have a backfilled history."""
        return tuple(s for s in self.sensors if s.device is None)

    @property
    def devices(self) -> tuple[Sensor, ...]:
        """The sensors real meters report: their history starts when they first report."""
        return tuple(s for s in self.sensors if s.device is not None)

    def get(self, sensor_id: str) -> Sensor:
        for s in self.sensors:
            if s.id == sensor_id:
                return s
        raise KeyError(sensor_id)


def _build(cls: type, raw: Any, where: str) -> Any:
    """Build a dataclass from a mapping, refusing keys the dataclass does not know."""
    if not isinstance(raw, dict):
        raise FleetError(f"{where}: expected a mapping, got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise FleetError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}")
    missing = sorted(
        name
        for name, f in fields.items()
        if name not in raw and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    )
    if missing:
        raise FleetError(f"{where}: missing key(s) {', '.join(map(repr, missing))}")
    try:
        return cls(**raw)
    except TypeError as exc:  # pragma: no cover - guarded by the key checks above
        raise FleetError(f"{where}: {exc}") from exc


def _replay(raw: Any, where: str) -> Replay:
    from homewatt import replay as replay_data

    rep: Replay = _build(Replay, raw, where)
    start = rep.start
    if not isinstance(start, dt.datetime):
        try:
            start = dt.datetime.fromisoformat(str(start).replace("Z", "+00:00"))
        except ValueError as exc:
            raise FleetError(f"{where}.start: {exc}") from exc
    if start.tzinfo is None:
        raise FleetError(f"{where}.start: give a UTC offset, e.g. 2022-12-17T16:24:00Z")
    try:
        replay_data.dataset_path(rep.dataset)
    except replay_data.ReplayError as exc:
        raise FleetError(f"{where}: {exc}") from exc
    return Replay(dataset=rep.dataset, start=start)


def _device(raw: Any, where: str) -> Device:
    from urllib.parse import urlsplit

    device: Device = _build(Device, raw, where)
    if device.format not in DEVICE_FORMATS:
        raise FleetError(f"{where}.format: {device.format!r} not in {DEVICE_FORMATS}")
    _number(device.stale_after_s, f"{where}.stale_after_s", 1, 3600)
    if device.max_power_w is not None:
        _number(device.max_power_w, f"{where}.max_power_w", 100, 250_000)
    if device.is_mqtt:
        if not device.broker or not device.topic:
            raise FleetError(f"{where}: an MQTT device needs 'broker' (mqtt://host:port) and 'topic'")
        url = urlsplit(device.broker)
        try:
            port = url.port
        except ValueError as exc:
            raise FleetError(f"{where}.broker: {exc}") from exc
        if url.scheme not in MQTT_SCHEMES or not url.hostname or port is None:
            raise FleetError(f"{where}.broker: expected mqtt://host:port, got {device.broker!r}")
        if any(c in device.topic for c in "#+") or device.topic.strip("/") != device.topic:
            raise FleetError(f"{where}.topic: {device.topic!r} must be a plain topic, no wildcard")
        if device.port is not None:
            raise FleetError(f"{where}: 'port' is for a TIC device, not {device.format}")
    else:
        if not device.port:
            raise FleetError(f"{where}: a TIC device needs 'port' (e.g. /dev/ttyUSB0)")
        if device.mode not in TIC_MODES:
            raise FleetError(f"{where}.mode: {device.mode!r} not in {TIC_MODES}")
        if device.broker or device.topic:
            raise FleetError(f"{where}: 'broker' and 'topic' are for MQTT devices, not tic")
    return device


def _number(value: Any, where: str, lo: float, hi: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise FleetError(f"{where}: expected a number in [{lo}, {hi}], got {value!r}")


def _sensor(raw: Any, index: int) -> Sensor:
    where = f"sensors[{index}]"
    if isinstance(raw, dict) and "id" in raw:
        where += f" (id {raw['id']!r})"
    raw = dict(raw) if isinstance(raw, dict) else raw
    if isinstance(raw, dict):
        if "heating" in raw:
            raw["heating"] = _build(Heating, raw["heating"], f"{where}.heating")
        if raw.get("water_heater") is not None:
            raw["water_heater"] = _build(WaterHeater, raw["water_heater"], f"{where}.water_heater")
        if raw.get("replay") is not None:
            raw["replay"] = _replay(raw["replay"], f"{where}.replay")
        if raw.get("device") is not None:
            raw["device"] = _device(raw["device"], f"{where}.device")
            if raw.get("replay") is not None:
                raise FleetError(f"{where}: a sensor is either a real device or a replay, not both")
            # A real meter needs no model; these only matter to its simulator.
            raw.setdefault("seed", zlib.crc32(str(raw.get("id", "")).encode()) & 0x7FFFFFFF)
            raw.setdefault("index_date", DEVICE_INDEX_DATE)
            raw.setdefault("index_kwh", 0.0)
        if "index_date" in raw and not isinstance(raw["index_date"], dt.date):
            try:
                raw["index_date"] = dt.date.fromisoformat(str(raw["index_date"]))
            except ValueError as exc:
                raise FleetError(f"{where}.index_date: {exc}") from exc
    if isinstance(raw, dict) and "timezone" in raw:
        raise FleetError(f"{where}: unknown key 'timezone' (set it once, at the fleet's top level)")
    sensor: Sensor = _build(Sensor, raw, where)
    if not isinstance(sensor.id, str) or not SENSOR_ID.fullmatch(sensor.id):
        raise FleetError(f"{where}: sensor id {sensor.id!r} is not [a-z0-9-]{{1,64}}")
    if sensor.heating.type not in HEATING_TYPES:
        raise FleetError(f"{where}.heating.type: {sensor.heating.type!r} not in {HEATING_TYPES}")
    for name, lo, hi in (
        ("seed", 0, 2**31),
        ("occupants", 1, 12),
        ("base_w", 10, 2000),
        ("fridge_w", 0, 1000),
        ("cooking_w", 0, 10000),
        ("lighting_w", 0, 3000),
        ("electronics_w", 0, 3000),
        ("washing_per_week", 0, 14),
        ("dishwasher_per_week", 0, 14),
        ("home_at_lunch", 0, 1),
        ("index_kwh", 0, 1e9),
    ):
        _number(getattr(sensor, name), f"{where}.{name}", lo, hi)
    # Noise is symmetric around the base load; keeping it under half the base load
    # guarantees the meter never reads a negative power.
    _number(sensor.noise_w, f"{where}.noise_w", 0, sensor.base_w // 2)
    _number(sensor.heating.rated_w, f"{where}.heating.rated_w", 0, 36000)
    if sensor.water_heater is not None:
        _number(sensor.water_heater.power_w, f"{where}.water_heater.power_w", 500, 6000)
        _number(sensor.water_heater.litres, f"{where}.water_heater.litres", 30, 500)
    return sensor


def parse_fleet(doc: Any, source: str = "fleet") -> Fleet:
    """Validate a fleet document (already parsed YAML) into a `Fleet`."""
    if not isinstance(doc, dict):
        raise FleetError(f"{source}: expected a mapping with 'timezone' and 'sensors'")
    unknown = sorted(set(doc) - {"timezone", "sensors"})
    if unknown:
        raise FleetError(f"{source}: unknown key(s) {', '.join(map(repr, unknown))}")
    tz = doc.get("timezone", DEFAULT_TIMEZONE)
    try:
        import zoneinfo

        zoneinfo.ZoneInfo(tz)
    except Exception as exc:
        raise FleetError(f"{source}: timezone {tz!r} is not a known zone") from exc
    raw_sensors = doc.get("sensors")
    if not isinstance(raw_sensors, list) or not raw_sensors:
        raise FleetError(f"{source}: 'sensors' must be a non-empty list")
    sensors = tuple(dataclasses.replace(_sensor(raw, i), timezone=tz) for i, raw in enumerate(raw_sensors))
    seen: dict[str, int] = {}
    for i, s in enumerate(sensors):
        if s.id in seen:
            raise FleetError(f"sensors[{i}]: duplicate sensor id {s.id!r} (first at sensors[{seen[s.id]}])")
        seen[s.id] = i
    return Fleet(timezone=tz, sensors=sensors)


def load_fleet(path: str | Path | None = None) -> Fleet:
    """Read and validate a fleet file; the default fleet ships with the package."""
    path = Path(path) if path else DEFAULT_FLEET
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise FleetError(f"{path}: cannot read fleet file: {exc}") from exc
    try:
        return parse_fleet(doc, str(path))
    except FleetError as exc:
        raise FleetError(f"{path}: {exc}") from exc
