"""What a real meter says, once decoded: the one shape every protocol parser returns.

Parsers (TIC frames, Shelly and Tasmota messages) turn bytes into a `Reading`
or raise `Rejected` with one of `REASONS`; they know nothing of time, staleness
or the other sensors.  What a reading *means* for the served series (is it
plausible, is it fresh, is the index a reset) is decided once, in
devices/state.py, so the three protocols cannot drift apart on it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

# Why a reading was dropped: the `reason` label of contract.DEVICE_REJECTED.
CHECKSUM = "checksum"  # a TIC group whose checksum does not match
TRUNCATED = "truncated"  # a frame cut short (EOT, a missing ETX/CR/LF, a merged group)
NOT_JSON = "not_json"  # an MQTT payload that is not a JSON object
MISSING_FIELD = "missing_field"  # the power or the energy index is absent
BAD_VALUE = "bad_value"  # a field that is there but not a number (or not a known shape)
NEGATIVE = "negative"  # a negative power or index
NAN = "nan"  # NaN or infinity
IMPLAUSIBLE = "implausible"  # above the subscribed power, or an index jump no home can draw
FUTURE = "future"  # the device's own timestamp lies ahead of our clock
REASONS = (CHECKSUM, TRUNCATED, NOT_JSON, MISSING_FIELD, BAD_VALUE, NEGATIVE, NAN, IMPLAUSIBLE, FUTURE)


class Rejected(ValueError):
    """A message or frame that must not reach the served series; `reason` is one of REASONS."""

    def __init__(self, reason: str, detail: str):
        assert reason in REASONS, reason
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Reading:
    """One decoded message or frame.  Fields a device does not report stay None.

    `energy_wh` is the device's own energy index (Wh), the source of the served
    counter.  `time` is the device's own clock (Unix seconds) where the message
    carries one; it is used to refuse readings from the future, never to
    timestamp samples.  `max_power_w` is the subscribed power a meter declares
    about itself (the Linky's ISOUSC/PREF/PCOUP), which bounds what is plausible.
    """

    power_w: float | None = None  # active power, W
    apparent_va: float | None = None  # apparent power, VA
    energy_wh: float | None = None  # energy index, Wh
    time: float | None = None  # the device's clock, Unix seconds
    max_power_w: float | None = None  # subscribed power declared by the meter
    meter_id: str | None = None  # ADCO/ADSC, a Shelly's src: for logs only


def number(value: object, field: str) -> float:
    """A JSON or TIC field as a float, refusing what is not a finite, non-negative number."""
    if isinstance(value, bool) or value is None:
        raise Rejected(BAD_VALUE if value is not None else MISSING_FIELD, f"{field} is {value!r}")
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise Rejected(BAD_VALUE, f"{field} is not a number: {value!r}") from None
    if out != out or out in (float("inf"), float("-inf")):
        raise Rejected(NAN, f"{field} is {value!r}")
    if out < 0:
        raise Rejected(NEGATIVE, f"{field} is {value!r}")
    return out


def json_number(value: object, field: str) -> float:
    """`number` for a JSON field, where a string is not a number: a device that quotes its
    values is not one whose format we know."""
    if isinstance(value, str):
        raise Rejected(BAD_VALUE, f"{field} is a string: {value!r}")
    return number(value, field)


def json_object(payload: bytes) -> dict[str, Any]:
    """An MQTT payload as a JSON object, or NOT_JSON.  NaN and Infinity tokens parse (Python's
    json accepts them), so that `number` reports them as such."""
    try:
        doc = json.loads(payload)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise Rejected(NOT_JSON, f"not JSON: {payload[:80]!r}") from None
    if not isinstance(doc, dict):
        raise Rejected(NOT_JSON, f"not a JSON object: {payload[:80]!r}")
    return doc
