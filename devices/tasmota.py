"""Tasmota energy plugs over MQTT: their `ENERGY` telemetry decoded into a `Reading`.

Tasmota sends the same `ENERGY` object in two places: the periodic telemetry
`tele/<topic>/SENSOR` (every TelePeriod, 300 s by default, plus PowerDelta extras) and the
reply to `Status 10` on `stat/<topic>/STATUS10`, wrapped in `StatusSNS`, which lets a
collector ask for a value now instead of waiting out the period.  Everything else the
device publishes (LWT, STATE, RESULT) says nothing about energy.

Units follow EnergyShow in the firmware: `Total` is kWh (EnergyRes decimals, 3 by default)
and includes `Today`; `Power` is W.  A multi-phase device prints an array per phase for the
power, and for the energies too when SetOption129 is on (else their sum): either way the
phases are summed, since a sensor is one household feed.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any
from zoneinfo import ZoneInfo

from devices.reading import BAD_VALUE, MISSING_FIELD, Reading, Rejected, json_number, json_object, number


def topics(topic: str) -> list[str]:
    """The telemetry and the Status 10 reply: the two places an ENERGY object appears."""
    return [f"tele/{topic}/SENSOR", f"stat/{topic}/STATUS10"]


def parse(topic: str, payload: bytes, tz: str = "Europe/Paris") -> Reading | None:
    """The reading in a SENSOR or STATUS10 message; None for any other topic (LWT, STATE...).

    The message kind is the topic's last level, since a custom FullTopic may move the
    `tele`/`stat` prefix but always ends with it.  A SENSOR message must carry `ENERGY`,
    even one from a device that also has, say, a temperature probe: this sensor was
    configured as an energy meter, so a message without it is MISSING_FIELD.

    `Time` is the device's local time in its own timezone, `tz`, without an offset
    (unless SetOption52 appends one, which is then used).  In the autumn's repeated hour
    the earlier instant is taken: the device time is only there to refuse readings from
    the future, and erring an hour into the past cannot trigger that.  Time is to the
    second, as Tasmota prints it.  `energy_wh` is rounded to 1 mWh, below the finest
    EnergyRes (5 decimals of kWh), which only drops the float noise of `Total * 1000`.
    """
    kind = topic.rsplit("/", 1)[-1]
    if kind not in ("SENSOR", "STATUS10"):
        return None
    doc = json_object(payload)
    if kind == "STATUS10":
        doc = _member(doc, "StatusSNS", "STATUS10")
    energy = _member(doc, "ENERGY", kind)
    power = _phases(energy, "Power", required=True)
    total = _phases(energy, "Total", required=True)
    apparent = _phases(energy, "ApparentPower", required=False)
    assert power is not None and total is not None
    return Reading(
        power_w=power,
        apparent_va=apparent,
        energy_wh=round(total * 1000, 3),
        time=_device_time(doc.get("Time"), tz),
    )


def _member(doc: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    if key not in doc:
        raise Rejected(MISSING_FIELD, f"{where} has no {key}")
    value = doc[key]
    if not isinstance(value, dict):
        raise Rejected(BAD_VALUE, f"{where}.{key} is not an object: {value!r}")
    return value


def _phases(energy: dict[str, Any], key: str, *, required: bool) -> float | None:
    """A field as one number, summing the phases of an array.

    A phase may be negative (a bidirectional meter exporting on that phase); only the
    sum, the feed's net value, must not be, as for a single-phase device.
    """
    field = f"ENERGY.{key}"
    if key not in energy:
        if required:
            raise Rejected(MISSING_FIELD, f"{field} is absent")
        return None
    value = energy[key]
    if isinstance(value, list):
        if not value:
            raise Rejected(BAD_VALUE, f"{field} is an empty array")
        for i, phase in enumerate(value):
            if isinstance(phase, bool) or not isinstance(phase, int | float):
                raise Rejected(BAD_VALUE, f"{field}[{i}] is not a number: {phase!r}")
        return number(math.fsum(value), field)  # a NaN or infinite phase makes the sum one: NAN
    return json_number(value, field)


def _device_time(value: object, tz: str) -> float | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise Rejected(BAD_VALUE, f"Time is not a string: {value!r}")
    try:
        t = dt.datetime.fromisoformat(value)
    except ValueError:
        raise Rejected(BAD_VALUE, f"Time is not an ISO date: {value!r}") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=ZoneInfo(tz))  # fold=0: the earlier of a repeated hour
    return t.timestamp()


def sensor_message(
    *,
    power_w: float,
    total_kwh: float,
    t: float,
    tz: str = "Europe/Paris",
    apparent_va: float | None = None,
    today_kwh: float = 0.0,
    yesterday_kwh: float = 0.0,
    period_wh: float = 0.0,
    start: str = "2024-01-01T00:00:00",
) -> dict[str, Any]:
    """A `tele/<topic>/SENSOR` payload of a single-phase plug, at Unix time `t` shown in `tz`.

    The values are printed as given (a real device rounds Total to EnergyRes decimals:
    pass rounded values to mimic it), so they parse back exactly; `Time` drops the
    fraction of a second, as the device does.  ApparentPower, ReactivePower and Factor
    appear only with `apparent_va`, as the firmware omits them when it measures no
    voltage or current; Voltage and Current are plausible values derived from the powers.
    """
    local = dt.datetime.fromtimestamp(t, ZoneInfo(tz))
    energy: dict[str, Any] = {
        "TotalStartTime": start,
        "Total": total_kwh,
        "Yesterday": yesterday_kwh,
        "Today": today_kwh,
        "Period": period_wh,
        "Power": power_w,
    }
    voltage = 231
    if apparent_va is not None:
        energy["ApparentPower"] = apparent_va
        energy["ReactivePower"] = round(math.sqrt(max(apparent_va**2 - power_w**2, 0.0)))
        energy["Factor"] = round(min(power_w / apparent_va, 1.0), 2) if apparent_va else 0.0
    energy["Voltage"] = voltage
    energy["Current"] = round((power_w if apparent_va is None else apparent_va) / voltage, 3)
    return {"Time": local.strftime("%Y-%m-%dT%H:%M:%S"), "ENERGY": energy}
