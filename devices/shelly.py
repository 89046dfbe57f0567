"""Shelly Gen2+ devices over MQTT: their status messages decoded into a `Reading`.

A Shelly publishes on change only, never periodically, and in two ways at once:
with `status_ntf` on, a component's full status JSON on `<prefix>/status/<component>`;
with `rpc_ntf` on (the default), JSON-RPC notifications on `<prefix>/events/rpc`,
where `NotifyStatus` carries only the keys that changed.  A single message therefore
rarely says everything: the device keeps the last status of each component and
overlays what arrives on it, which is what the API documentation intends.

The Pro 3EM and the Pro EM / EM Gen3 also split one meter channel over two
components: the power on `em:0` / `em1:N`, the energy index on `emdata:0` /
`em1data:N`, each published when *it* changes.  Only the device state joins them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from devices.reading import BAD_VALUE, MISSING_FIELD, Reading, Rejected, json_number, json_object


@dataclass(frozen=True)
class _Kind:
    """Where one kind of metering component keeps its values."""

    power: str  # active power, W, on the component itself
    apparent: str | None  # apparent power, VA, on the component itself, if it reports one
    energy: tuple[str, ...]  # path to the energy index (Wh), on the companion component or itself
    data: str | None  # the kind of the companion component carrying the index, if not itself


_KINDS: dict[str, _Kind] = {
    "switch": _Kind("apower", None, ("aenergy", "total"), None),  # Plus PM, Plus Plug, 1PM
    "pm1": _Kind("apower", None, ("aenergy", "total"), None),  # Plus PM Mini, Plug PM Gen3
    "em": _Kind("total_act_power", "total_aprt_power", ("total_act",), "emdata"),  # Pro 3EM
    "em1": _Kind("act_power", "aprt_power", ("total_act_energy",), "em1data"),  # Pro EM, EM Gen3
}

COMPONENTS: tuple[str, ...] = tuple(_KINDS)

_NOTIFY_STATUS = "NotifyStatus"
_NOTIFY_FULL_STATUS = "NotifyFullStatus"
_ABSENT = object()


def topics(prefix: str) -> list[str]:
    """The subscriptions that see a device both ways, whichever of status_ntf / rpc_ntf is on."""
    return [f"{prefix}/status/+", f"{prefix}/events/rpc"]


class ShellyDevice:
    """One device's state across messages: the last full status per component, so a NotifyStatus
    delta or a power-only em:0 message still yields a complete Reading.

    `handle` returns a Reading with whatever is known *after* the message, fields not yet
    known left None: after an `em:0` status but before any `emdata:0`, `energy_wh` is None
    (the caller treats that reading as power-only); once both were seen, each message
    returns the new values of its component joined with the last known values of the
    other.  It returns None when the message is not about this sensor's component(s) (another
    channel, `sys`, `wifi`, a NotifyEvent, an unrelated topic) or when neither the power nor
    the index is known yet (a delta of other keys before any full status).

    Which fields are required depends on what the message claims to be.  A full status
    (a `status/<component>` topic or a NotifyFullStatus) replaces the stored one and must
    carry its component's field -- the power for switch/pm1/em/em1, the index for
    switch/pm1/emdata/em1data -- else MISSING_FIELD.  A NotifyStatus delta is overlaid on
    the stored status; omitting unchanged keys is what a delta does, so a key it does not
    carry is taken from the stored status, or stays unknown if there is none yet.
    A rejected message leaves the stored state as it was.  Values must be JSON numbers: a
    quoted one is BAD_VALUE, since no Shelly quotes them.  An em/em1 power goes negative
    while the home exports (solar), and is refused as NEGATIVE like any negative power.

    `time` is the notification's `params.ts` (None for status topics, which carry no
    clock); `meter_id` is the `src` of the last notification seen (None before any).
    """

    def __init__(self, prefix: str, component: str):
        kind, sep, index = component.partition(":")
        if kind not in _KINDS or not sep or not index.isdigit():
            raise ValueError(f"not a Shelly metering component ({', '.join(COMPONENTS)}): {component!r}")
        self.prefix = prefix
        self.component = component
        self._kind = _KINDS[kind]
        self._power_c = component
        data = self._kind.data
        self._energy_c = f"{data}:{index}" if data else component
        self._mine = (self._power_c,) if self._energy_c == self._power_c else (self._power_c, self._energy_c)
        self._status: dict[str, dict[str, Any]] = {}
        self._complete: set[str] = set()  # components whose stored status came from a full status
        self._src: str | None = None

    def handle(self, topic: str, payload: bytes) -> Reading | None:
        status_topic = f"{self.prefix}/status/"
        if topic.startswith(status_topic):
            name = topic[len(status_topic) :]
            if name not in self._mine:
                return None
            return self._apply({name: json_object(payload)}, full=True, ts=None, src=None)
        if topic != f"{self.prefix}/events/rpc":
            return None
        message = json_object(payload)
        method = message.get("method")
        if method not in (_NOTIFY_STATUS, _NOTIFY_FULL_STATUS):
            return None  # NotifyEvent (button pushes, scheduled jobs) carries no status
        params = message.get("params")
        if not isinstance(params, dict):
            raise Rejected(BAD_VALUE, f"{method} params is not an object: {params!r}")
        parts: dict[str, dict[str, Any]] = {}
        for name in self._mine:
            if name in params:
                part = params[name]
                if not isinstance(part, dict):
                    raise Rejected(BAD_VALUE, f"{method} {name} is not an object: {part!r}")
                parts[name] = part
        if not parts:
            return None
        ts = params.get("ts")
        src = message.get("src")
        return self._apply(
            parts,
            full=method == _NOTIFY_FULL_STATUS,
            ts=None if ts is None else json_number(ts, "params.ts"),
            src=src if isinstance(src, str) else None,
        )

    def _apply(
        self, parts: dict[str, dict[str, Any]], *, full: bool, ts: float | None, src: str | None
    ) -> Reading | None:
        """Decode the state this message would leave, and keep it only if it decodes."""
        status = dict(self._status)
        complete = set(self._complete)
        for name, part in parts.items():
            status[name] = part if full else _overlay(status.get(name, {}), part)
            if full:
                complete.add(name)
        kind = self._kind
        power = apparent = energy = None
        if self._power_c in status:
            st, required = status[self._power_c], self._power_c in complete
            power = _field(st, self._power_c, (kind.power,), required)
            if kind.apparent is not None:
                apparent = _field(st, self._power_c, (kind.apparent,), False)
        if self._energy_c in status:
            st, required = status[self._energy_c], self._energy_c in complete
            energy = _field(st, self._energy_c, kind.energy, required)
        self._status, self._complete = status, complete
        if src is not None:
            self._src = src
        if power is None and energy is None:
            return None
        return Reading(power_w=power, apparent_va=apparent, energy_wh=energy, time=ts, meter_id=self._src)


def _overlay(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """`base` updated with `changes`, nested objects merged too: a delta may name one sub-key."""
    out = dict(base)
    for key, value in changes.items():
        old = out.get(key)
        out[key] = _overlay(old, value) if isinstance(old, dict) and isinstance(value, dict) else value
    return out


def _field(status: dict[str, Any], component: str, path: tuple[str, ...], required: bool) -> float | None:
    """The number at `path`; absent is MISSING_FIELD when `required`, else unknown (None)."""
    name = f"{component}.{'.'.join(path)}"
    value: object = status
    for key in path:
        if not isinstance(value, dict):
            raise Rejected(BAD_VALUE, f"{name}: {key!r} is not in an object")
        value = value.get(key, _ABSENT)
        if value is _ABSENT:
            break
    if value is _ABSENT or (value is None and not required):
        if required:
            raise Rejected(MISSING_FIELD, f"{name} is absent")
        return None
    return json_number(value, name)


# --- what a device would publish, for tests and the simulated fleet --------------------------------

_VOLTAGE = 230.4
_FREQ = 50.0
_PHASES = (("a", 0.5), ("b", 0.3), ("c", 0.2))  # how a Pro 3EM's builder splits the load


def status(
    component: str,
    *,
    power_w: float,
    energy_wh: float,
    apparent_va: float | None = None,
    t: float | None = None,
) -> dict[str, dict[str, Any]]:
    """The status message(s) a device would publish for `component`, keyed by status-topic suffix.

    The parsed fields carry exactly the values given, so they decode back to them; the
    others (voltage, current, per-phase values, by_minute...) are plausible values derived
    from them, rounded as the device rounds.  em:N yields "em:N" and "emdata:N", em1:N
    yields "em1:N" and "em1data:N", in that order; switch:N and pm1:N one message.  For
    em/em1 an `apparent_va` left None is derived from a 0.95 power factor, as a real meter
    always reports one; switch and pm1 report no apparent power, so giving one is an error.
    `t` (default: now) only sets `minute_ts`.
    """
    kind, _, index = component.partition(":")
    if kind not in _KINDS or not index.isdigit():
        raise ValueError(f"not a Shelly metering component: {component!r}")
    n = int(index)
    if kind in ("switch", "pm1"):
        if apparent_va is not None:
            raise ValueError(f"a {kind} component reports no apparent power")
        minute_ts = int((time.time() if t is None else t) // 60 * 60)
        per_minute = round(power_w * 1000 / 60, 3)  # mWh in a full minute
        aenergy = {
            "total": energy_wh,
            "by_minute": [per_minute, per_minute, per_minute],
            "minute_ts": minute_ts,
        }
        ret_aenergy = {"total": 0.0, "by_minute": [0.0, 0.0, 0.0], "minute_ts": minute_ts}
        current = round(power_w / _VOLTAGE, 3)
        if kind == "pm1":
            body: dict[str, Any] = {"id": n, "voltage": _VOLTAGE, "current": current, "apower": power_w}
            body |= {"freq": _FREQ, "aenergy": aenergy, "ret_aenergy": ret_aenergy}
        else:
            body = {"id": n, "source": "init", "output": True, "apower": power_w, "voltage": _VOLTAGE}
            body |= {"freq": _FREQ, "current": current, "aenergy": aenergy, "ret_aenergy": ret_aenergy}
            body["temperature"] = {"tC": 42.0, "tF": 107.6}
        return {component: body}
    va = round(power_w / 0.95, 3) if apparent_va is None else apparent_va
    pf = round(power_w / va, 2) if va else 0.0
    meter: dict[str, Any] = {"id": n}
    data: dict[str, Any] = {"id": n}
    if kind == "em1":
        meter |= {"current": round(va / _VOLTAGE, 3), "voltage": _VOLTAGE, "act_power": power_w}
        meter |= {"aprt_power": va, "pf": pf, "freq": _FREQ, "calibration": "factory"}
        data |= {"total_act_energy": energy_wh, "total_act_ret_energy": 0.0}
        return {component: meter, f"em1data:{n}": data}
    for phase, share in _PHASES:
        meter |= {
            f"{phase}_current": round(va * share / _VOLTAGE, 3),
            f"{phase}_voltage": _VOLTAGE,
            f"{phase}_act_power": round(power_w * share, 1),
            f"{phase}_aprt_power": round(va * share, 1),
            f"{phase}_pf": pf,
            f"{phase}_freq": _FREQ,
        }
        data |= {
            f"{phase}_total_act_energy": round(energy_wh * share, 2),
            f"{phase}_total_act_ret_energy": 0.0,
        }
    meter |= {"n_current": None, "total_current": round(va / _VOLTAGE, 3)}
    meter |= {"total_act_power": power_w, "total_aprt_power": va, "user_calibrated_phase": []}
    data |= {"total_act": energy_wh, "total_act_ret": 0.0}
    return {component: meter, f"emdata:{n}": data}


def notify_status(src: str, prefix: str, ts: float, changes: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A NotifyStatus envelope, as published on `<prefix>/events/rpc`, carrying `changes` per component."""
    return {"src": src, "dst": f"{prefix}/events", "method": _NOTIFY_STATUS, "params": {"ts": ts, **changes}}
