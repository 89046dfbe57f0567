"""Shelly Gen2+ and Tasmota MQTT messages decode to the values the devices meant, and bad ones are refused.

The literal payloads are real captures quoted in public bug reports; the others follow the
shapes of the Shelly Gen2 API documentation and Tasmota's EnergyShow.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from devices import shelly, tasmota
from devices.reading import BAD_VALUE, MISSING_FIELD, NAN, NEGATIVE, NOT_JSON, Reading, Rejected

PREFIX = "shellyplus1pm-aabbccddeeff"
PRO3EM = "shellypro3em-aabbccddeeff"
PROEM = "shellyproem50-08f9e0e67204"

# Plus 1PM, ioBroker.shelly#813, on …/status/switch:0.
SWITCH_REAL = b'{"id":0,"source":"MQTT","output":true,"apower":3.8,"voltage":231.0,"freq":50.1,"current":0.030,"aenergy":{"total":26064.252,"by_minute":[198.422,0.000,0.000],"minute_ts":1698999933},"temperature":{"tC":42.0,"tF":107.6}}'
# Pro 3EM, solarflow-control#138, on shellypro3em/status/em:0 and …/emdata:0.
EM_REAL = b'{"id":0,"a_current":1.201,"a_voltage":230.8,"a_act_power":145.4,"a_aprt_power":277.1,"a_pf":0.68,"a_freq":50.0,"b_current":1.042,"b_voltage":231.1,"b_act_power":90.3,"b_aprt_power":240.8,"b_pf":0.61,"b_freq":50.0,"c_current":1.916,"c_voltage":231.4,"c_act_power":358.3,"c_aprt_power":442.9,"c_pf":0.84,"c_freq":50.0,"n_current":null,"total_current":4.159,"total_act_power":594.006,"total_aprt_power":960.806, "user_calibrated_phase":[]}'
EMDATA_REAL = b'{"id":0,"a_total_act_energy":115973.75,"a_total_act_ret_energy":0.00,"b_total_act_energy":118809.52,"b_total_act_ret_energy":0.00,"c_total_act_energy":110844.76,"c_total_act_ret_energy":1247.42,"total_act":345628.03, "total_act_ret":1247.42}'
# Pro EM-50 channel 1, from its Shelly.GetStatus quoted in evcc-io/evcc#12385.
EM1_REAL = b'{"id":1,"current":22.780,"voltage":224.6,"act_power":5080.3,"aprt_power":5142.4,"pf":0.99,"freq":50.0,"calibration":"factory"}'
EM1DATA_REAL = b'{"id":1,"total_act_energy":6644.90,"total_act_ret_energy":2595.26}'
# Tasmota plug, arendst/Tasmota#5373.
TASMOTA_REAL = b'{"Time":"2019-03-01T11:04:47","ENERGY":{"TotalStartTime":"2018-11-02T16:55:59","Total":94.493,"Yesterday":1.069,"Today":0.462,"Period":6,"Power":76,"ApparentPower":102,"ReactivePower":67,"Factor":0.75,"Voltage":233,"Current":0.436}}'


def paris(text: str) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=ZoneInfo("Europe/Paris")).timestamp()


def rpc(method: str, params: dict[str, Any], src: str = PREFIX) -> bytes:
    return json.dumps({"src": src, "dst": f"{src}/events", "method": method, "params": params}).encode()


def reading(topic: str, payload: bytes, tz: str = "Europe/Paris") -> Reading:
    got = tasmota.parse(topic, payload, tz)
    assert got is not None
    return got


@contextlib.contextmanager
def rejected(reason: str) -> Iterator[None]:
    with pytest.raises(Rejected) as info:
        yield
    assert info.value.reason == reason, info.value


# --- Shelly ------------------------------------------------------------------------------------


def test_shelly_topics_cover_status_and_notifications():
    assert shelly.topics(PRO3EM) == [f"{PRO3EM}/status/+", f"{PRO3EM}/events/rpc"]
    assert set(shelly.COMPONENTS) == {"switch", "pm1", "em", "em1"}


def test_shelly_switch_status_real_payload():
    device = shelly.ShellyDevice(PREFIX, "switch:0")
    got = device.handle(f"{PREFIX}/status/switch:0", SWITCH_REAL)
    assert got == Reading(power_w=3.8, energy_wh=26064.252)  # a status topic carries no clock, no src


def test_shelly_pm1_status():
    device = shelly.ShellyDevice("shellypmminig3-84fce63bd5e4", "pm1:0")
    payload = {
        "id": 0,
        "voltage": 229.8,
        "current": 0.412,
        "apower": 88.6,
        "freq": 50.0,
        "aenergy": {"total": 1234.567, "by_minute": [1466.0, 1477.2, 1476.9], "minute_ts": 1712345640},
        "ret_aenergy": {"total": 0.0, "by_minute": [0.0, 0.0, 0.0], "minute_ts": 1712345640},
    }
    got = device.handle("shellypmminig3-84fce63bd5e4/status/pm1:0", json.dumps(payload).encode())
    assert got == Reading(power_w=88.6, energy_wh=1234.567)


def test_shelly_notify_status_delta_overlays_the_last_status():
    device = shelly.ShellyDevice(PREFIX, "switch:0")
    device.handle(f"{PREFIX}/status/switch:0", SWITCH_REAL)
    # Only the power changed: the index comes from the stored status.
    got = device.handle(
        f"{PREFIX}/events/rpc",
        rpc("NotifyStatus", {"ts": 1699000001.25, "switch:0": {"id": 0, "apower": 1500.2}}),
    )
    assert got == Reading(power_w=1500.2, energy_wh=26064.252, time=1699000001.25, meter_id=PREFIX)
    # A delta naming one sub-key of aenergy keeps the stored power and the rest of aenergy.
    got = device.handle(
        f"{PREFIX}/events/rpc",
        rpc("NotifyStatus", {"ts": 1699000060.5, "switch:0": {"id": 0, "aenergy": {"total": 26089.3}}}),
    )
    assert got == Reading(power_w=1500.2, energy_wh=26089.3, time=1699000060.5, meter_id=PREFIX)
    # A delta of other keys confirms the current values with the new clock.
    got = device.handle(
        f"{PREFIX}/events/rpc",
        rpc("NotifyStatus", {"ts": 1699000070.0, "switch:0": {"temperature": {"tC": 43.1, "tF": 109.6}}}),
    )
    assert got == Reading(power_w=1500.2, energy_wh=26089.3, time=1699000070.0, meter_id=PREFIX)
    # meter_id stays known for a later status-topic message.
    got = device.handle(f"{PREFIX}/status/switch:0", SWITCH_REAL)
    assert got == Reading(power_w=3.8, energy_wh=26064.252, meter_id=PREFIX)


def test_shelly_delta_before_any_full_status_gives_what_it_carries():
    device = shelly.ShellyDevice(PREFIX, "switch:0")
    assert (
        device.handle(
            f"{PREFIX}/events/rpc",
            rpc("NotifyStatus", {"ts": 1.0, "switch:0": {"output": False, "source": "button"}}),
        )
        is None
    )
    got = device.handle(
        f"{PREFIX}/events/rpc", rpc("NotifyStatus", {"ts": 2.0, "switch:0": {"apower": 12.5}})
    )
    assert got == Reading(power_w=12.5, time=2.0, meter_id=PREFIX)


def test_shelly_notify_full_status_replaces_and_picks_its_component():
    device = shelly.ShellyDevice(PREFIX, "switch:1")
    switch0 = json.loads(SWITCH_REAL)
    switch1 = dict(
        switch0, id=1, apower=230.0, aenergy={"total": 777.0, "by_minute": [0, 0, 0], "minute_ts": 1698999933}
    )
    params = {
        "ts": 1698999950.12,
        "sys": {"mac": "AABBCCDDEEFF", "uptime": 28980, "unixtime": 1698999950},
        "wifi": {"sta_ip": "192.168.1.20", "status": "got ip", "rssi": -60},
        "switch:0": switch0,
        "switch:1": switch1,
    }
    got = device.handle(f"{PREFIX}/events/rpc", rpc("NotifyFullStatus", params))
    assert got == Reading(power_w=230.0, energy_wh=777.0, time=1698999950.12, meter_id=PREFIX)
    # A full status replaces the stored one: a missing power is not filled from the old state.
    params["switch:1"] = {k: v for k, v in switch1.items() if k != "apower"}
    with rejected(MISSING_FIELD):
        device.handle(f"{PREFIX}/events/rpc", rpc("NotifyFullStatus", params))


def test_shelly_pro3em_power_and_energy_on_two_topics():
    device = shelly.ShellyDevice(PRO3EM, "em:0")
    # Power first: the index is not known yet, the reading is power-only.
    got = device.handle(f"{PRO3EM}/status/em:0", EM_REAL)
    assert got == Reading(power_w=594.006, apparent_va=960.806)
    got = device.handle(f"{PRO3EM}/status/emdata:0", EMDATA_REAL)
    assert got == Reading(power_w=594.006, apparent_va=960.806, energy_wh=345628.03)
    newer = dict(json.loads(EM_REAL), total_act_power=2100.5, total_aprt_power=2230.0)
    got = device.handle(f"{PRO3EM}/status/em:0", json.dumps(newer).encode())
    assert got == Reading(power_w=2100.5, apparent_va=2230.0, energy_wh=345628.03)


def test_shelly_pro3em_energy_first_then_notifications():
    device = shelly.ShellyDevice(PRO3EM, "em:0")
    got = device.handle(f"{PRO3EM}/status/emdata:0", EMDATA_REAL)
    assert got == Reading(energy_wh=345628.03)
    message = rpc(
        "NotifyStatus",
        {"ts": 1709200000.5, "em:0": json.loads(EM_REAL), "emdata:0": {"id": 0, "total_act": 345630.5}},
        src=PRO3EM,
    )
    got = device.handle(f"{PRO3EM}/events/rpc", message)
    assert got == Reading(
        power_w=594.006, apparent_va=960.806, energy_wh=345630.5, time=1709200000.5, meter_id=PRO3EM
    )


def test_shelly_em1_channel_and_its_data():
    device = shelly.ShellyDevice(PROEM, "em1:1")
    assert device.handle(f"{PROEM}/status/em1:0", EM1_REAL.replace(b'"id":1', b'"id":0')) is None
    assert device.handle(f"{PROEM}/status/em1data:0", EM1DATA_REAL) is None
    assert device.handle(f"{PROEM}/status/em1:1", EM1_REAL) == Reading(power_w=5080.3, apparent_va=5142.4)
    got = device.handle(f"{PROEM}/status/em1data:1", EM1DATA_REAL)
    assert got == Reading(power_w=5080.3, apparent_va=5142.4, energy_wh=6644.90)


@pytest.mark.parametrize(
    ("topic", "payload"),
    [
        (f"{PREFIX}/status/switch:1", SWITCH_REAL.replace(b'"id":0', b'"id":1')),  # another channel
        (f"{PREFIX}/status/sys", b'{"mac":"AABBCCDDEEFF","restart_required":false,"uptime":28980}'),
        (f"{PREFIX}/status/wifi", b'{"sta_ip":"192.168.1.20","status":"got ip","ssid":"K1","rssi":-60}'),
        (f"{PREFIX}/status/input:0", b'{"id":0,"state":false}'),
        (f"{PREFIX}/online", b"true"),
        ("shellyplus1pm-001122334455/status/switch:0", SWITCH_REAL),  # another device
        (
            f"{PREFIX}/events/rpc",
            rpc(
                "NotifyEvent",
                {"ts": 1.0, "events": [{"component": "input:0", "id": 0, "event": "single_push", "ts": 1.0}]},
            ),
        ),
        (f"{PREFIX}/events/rpc", rpc("NotifyStatus", {"ts": 1.0, "switch:1": {"id": 1, "apower": 5.0}})),
        (f"{PREFIX}/events/rpc", rpc("NotifyStatus", {"ts": 1.0, "sys": {"uptime": 5}})),
    ],
)
def test_shelly_other_component_or_topic_is_none(topic, payload):
    device = shelly.ShellyDevice(PREFIX, "switch:0")
    assert device.handle(topic, payload) is None


def status_bytes(**changes: object) -> bytes:
    """The real switch status with some top-level keys replaced (None: removed)."""
    doc = json.loads(SWITCH_REAL)
    for key, value in changes.items():
        if value is None:
            del doc[key]
        else:
            doc[key] = value
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not json", NOT_JSON),
        (b"", NOT_JSON),
        (b"\xff\xfe\xfa", NOT_JSON),
        (b"[1, 2, 3]", NOT_JSON),
        (b'"switch"', NOT_JSON),
        (b"3.8", NOT_JSON),
        (status_bytes(apower=None), MISSING_FIELD),
        (status_bytes(aenergy=None), MISSING_FIELD),
        (status_bytes(aenergy={"by_minute": [0, 0, 0], "minute_ts": 1698999933}), MISSING_FIELD),
        (status_bytes(aenergy=26064.252), BAD_VALUE),
        (status_bytes(apower="3.8"), BAD_VALUE),
        (status_bytes(apower="abc"), BAD_VALUE),
        (status_bytes(apower=True), BAD_VALUE),
        (status_bytes(apower=[3.8]), BAD_VALUE),
        (status_bytes(apower=-3.8), NEGATIVE),
        (status_bytes(aenergy={"total": -1.0}), NEGATIVE),
        (b'{"id":0,"apower": NaN,"aenergy":{"total":26064.252}}', NAN),
        (b'{"id":0,"apower": Infinity,"aenergy":{"total":26064.252}}', NAN),
        (b'{"id":0,"apower": 3.8,"aenergy":{"total":NaN}}', NAN),
        (b'{"id":0,"apower": null,"aenergy":{"total":26064.252}}', MISSING_FIELD),
    ],
)
def test_shelly_bad_status_is_rejected(payload, reason):
    device = shelly.ShellyDevice(PREFIX, "switch:0")
    with rejected(reason):
        device.handle(f"{PREFIX}/status/switch:0", payload)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", NOT_JSON),
        (b"[]", NOT_JSON),
        (rpc("NotifyStatus", {"ts": 1.0, "switch:0": {"apower": "3.8"}}), BAD_VALUE),
        (rpc("NotifyStatus", {"ts": 1.0, "switch:0": {"apower": -1}}), NEGATIVE),
        (b'{"src":"x","method":"NotifyStatus","params":{"ts":1.0,"switch:0":{"apower":NaN}}}', NAN),
        (rpc("NotifyStatus", {"ts": 1.0, "switch:0": 3.8}), BAD_VALUE),
        (rpc("NotifyStatus", {"ts": "yesterday", "switch:0": {"apower": 3.8}}), BAD_VALUE),
        (json.dumps({"src": "x", "method": "NotifyStatus", "params": [1]}).encode(), BAD_VALUE),
        (
            rpc("NotifyFullStatus", {"ts": 1.0, "switch:0": {"id": 0, "aenergy": {"total": 5.0}}}),
            MISSING_FIELD,
        ),
    ],
)
def test_shelly_bad_notification_is_rejected(payload, reason):
    device = shelly.ShellyDevice(PREFIX, "switch:0")
    with rejected(reason):
        device.handle(f"{PREFIX}/events/rpc", payload)


def test_shelly_rejected_delta_leaves_the_state_unchanged():
    device = shelly.ShellyDevice(PREFIX, "switch:0")
    device.handle(f"{PREFIX}/status/switch:0", SWITCH_REAL)
    with rejected(BAD_VALUE):
        device.handle(
            f"{PREFIX}/events/rpc", rpc("NotifyStatus", {"ts": 5.0, "switch:0": {"apower": "lots"}})
        )
    got = device.handle(
        f"{PREFIX}/events/rpc", rpc("NotifyStatus", {"ts": 6.0, "switch:0": {"output": True}})
    )
    assert got == Reading(power_w=3.8, energy_wh=26064.252, time=6.0, meter_id=PREFIX)


@pytest.mark.parametrize("component", ["light:0", "switch", "switch:x", "emdata:0", "em1data:1", ""])
def test_shelly_device_refuses_unknown_components(component):
    with pytest.raises(ValueError):
        shelly.ShellyDevice(PREFIX, component)


@pytest.mark.parametrize(
    ("component", "apparent", "topics"),
    [
        ("switch:0", None, ["switch:0"]),
        ("switch:2", None, ["switch:2"]),
        ("pm1:0", None, ["pm1:0"]),
        ("em:0", 2410.25, ["em:0", "emdata:0"]),
        ("em1:1", 1999.5, ["em1:1", "em1data:1"]),
    ],
)
def test_shelly_builders_round_trip(component, apparent, topics):
    messages = shelly.status(
        component, power_w=1873.4, energy_wh=123456.789, apparent_va=apparent, t=1_700_000_123.4
    )
    assert list(messages) == topics
    device = shelly.ShellyDevice(PRO3EM, component)
    got = None
    for name, body in messages.items():
        got = device.handle(f"{PRO3EM}/status/{name}", json.dumps(body).encode())
    assert got == Reading(power_w=1873.4, apparent_va=apparent, energy_wh=123456.789)
    # The same statuses as one notification carry its clock and the device id.
    fresh = shelly.ShellyDevice(PRO3EM, component)
    envelope = shelly.notify_status(PRO3EM, PRO3EM, 1_700_000_130.5, messages)
    assert envelope["method"] == "NotifyStatus" and envelope["dst"] == f"{PRO3EM}/events"
    got = fresh.handle(f"{PRO3EM}/events/rpc", json.dumps(envelope).encode())
    assert got == Reading(
        power_w=1873.4, apparent_va=apparent, energy_wh=123456.789, time=1_700_000_130.5, meter_id=PRO3EM
    )


def test_shelly_builders_are_realistic():
    (switch,) = shelly.status("switch:0", power_w=3.8, energy_wh=26064.252, t=1698999950.0).values()
    assert set(json.loads(SWITCH_REAL)) <= set(switch)
    assert switch["aenergy"]["minute_ts"] == 1698999900
    em, emdata = shelly.status("em:0", power_w=594.006, energy_wh=345628.03).values()
    assert set(em) == set(json.loads(EM_REAL))
    assert set(emdata) == set(json.loads(EMDATA_REAL))
    assert em["total_aprt_power"] >= em["total_act_power"]  # derived from a power factor when not given
    em1, em1data = shelly.status("em1:1", power_w=5080.3, energy_wh=6644.9, apparent_va=5142.4).values()
    assert set(em1) == set(json.loads(EM1_REAL))
    assert set(em1data) == set(json.loads(EM1DATA_REAL))
    with pytest.raises(ValueError):
        shelly.status("switch:0", power_w=1.0, energy_wh=1.0, apparent_va=2.0)


# --- Tasmota -----------------------------------------------------------------------------------


def test_tasmota_topics():
    assert tasmota.topics("plug_fridge") == ["tele/plug_fridge/SENSOR", "stat/plug_fridge/STATUS10"]


def test_tasmota_sensor_real_payload():
    got = tasmota.parse("tele/plug_fridge/SENSOR", TASMOTA_REAL)
    assert got == Reading(
        power_w=76.0, apparent_va=102.0, energy_wh=94493.0, time=paris("2019-03-01T11:04:47")
    )
    assert got is not None and got.time == 1551434687.0  # 10:04:47 UTC: CET in March


def test_tasmota_time_is_local_to_the_given_zone():
    assert reading("tele/p/SENSOR", TASMOTA_REAL, tz="UTC").time == 1551438287.0
    summer = TASMOTA_REAL.replace(b"2019-03-01T11:04:47", b"2019-07-01T11:04:47")
    assert reading("tele/p/SENSOR", summer).time == 1561971887.0  # CEST
    offset = TASMOTA_REAL.replace(b"2019-03-01T11:04:47", b"2019-03-01T11:04:47-05:00")  # SetOption52
    assert reading("tele/p/SENSOR", offset).time == 1551456287.0
    no_time = json.dumps({"ENERGY": json.loads(TASMOTA_REAL)["ENERGY"]}).encode()
    assert reading("tele/p/SENSOR", no_time).time is None


def test_tasmota_status10_reply():
    payload = b'{"StatusSNS":{"Time":"2024-05-12T18:30:02","ENERGY":{"TotalStartTime":"2023-11-02T16:55:59","Total":1520.118,"Yesterday":4.211,"Today":2.003,"Power":412,"ApparentPower":430,"ReactivePower":123,"Factor":0.96,"Voltage":232,"Current":1.853}}}'
    got = tasmota.parse("stat/plug_oven/STATUS10", payload)
    assert got == Reading(
        power_w=412.0, apparent_va=430.0, energy_wh=1520118.0, time=paris("2024-05-12T18:30:02")
    )


def test_tasmota_multi_phase_arrays_are_summed():
    # SetOption129 off: per-phase power, summed energies.
    payload = b'{"Time":"2023-01-10T09:00:00","ENERGY":{"TotalStartTime":"2022-12-01T00:00:00","Total":5231.442,"Yesterday":31.2,"Today":8.9,"Period":[25,1,0],"Power":[298,7,0],"ApparentPower":[312,20,0],"ReactivePower":[90,18,0],"Factor":[0.96,0.35,0.0],"Voltage":[231,230,232],"Current":[1.351,0.087,0.0]}}'
    got = tasmota.parse("tele/three_phase/SENSOR", payload)
    assert got == Reading(
        power_w=305.0, apparent_va=332.0, energy_wh=5231442.0, time=paris("2023-01-10T09:00:00")
    )
    # SetOption129 on: energies per phase too.
    payload = b'{"Time":"2023-01-10T09:00:00","ENERGY":{"TotalStartTime":"2022-12-01T00:00:00","Total":[3000.125,2000.25,231.067],"Yesterday":[20.1,10.1,1.0],"Today":[5.5,3.0,0.4],"Power":[298,7,0],"Voltage":[231,230,232],"Current":[1.351,0.087,0.0]}}'
    got = tasmota.parse("tele/three_phase/SENSOR", payload)
    assert got == Reading(power_w=305.0, energy_wh=5231442.0, time=paris("2023-01-10T09:00:00"))
    # A phase exporting is allowed; only the net must not be negative.
    payload = b'{"ENERGY":{"Total":10.0,"Power":[500,-120,30]}}'
    assert tasmota.parse("tele/three_phase/SENSOR", payload) == Reading(power_w=410.0, energy_wh=10000.0)


@pytest.mark.parametrize(
    ("topic", "payload"),
    [
        ("tele/plug_fridge/LWT", b"Online"),
        ("tele/plug_fridge/LWT", b"Offline"),
        (
            "tele/plug_fridge/STATE",
            b'{"Time":"2019-03-01T11:04:47","Uptime":"0T01:02:03","POWER":"ON","Wifi":{"RSSI":80}}',
        ),
        ("stat/plug_fridge/RESULT", b'{"POWER":"ON"}'),
        ("stat/plug_fridge/STATUS8", TASMOTA_REAL),
    ],
)
def test_tasmota_other_messages_are_none(topic, payload):
    assert tasmota.parse(topic, payload) is None


def energy_bytes(**changes: object) -> bytes:
    """The real payload with some ENERGY keys replaced (None: removed)."""
    doc = json.loads(TASMOTA_REAL)
    for key, value in changes.items():
        if value is None:
            del doc["ENERGY"][key]
        else:
            doc["ENERGY"][key] = value
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        ("tele/p/SENSOR", b"Online", NOT_JSON),
        ("tele/p/SENSOR", b"", NOT_JSON),
        ("tele/p/SENSOR", b"[76, 94.493]", NOT_JSON),
        ("tele/p/SENSOR", b'"ENERGY"', NOT_JSON),
        (
            "tele/p/SENSOR",
            b'{"Time":"2019-03-01T11:04:47","DS18B20":{"Id":"0316A27960FF","Temperature":21.4},"TempUnit":"C"}',
            MISSING_FIELD,
        ),
        ("tele/p/SENSOR", b'{"Time":"2019-03-01T11:04:47","ENERGY":76}', BAD_VALUE),
        ("stat/p/STATUS10", TASMOTA_REAL, MISSING_FIELD),  # a STATUS10 reply is wrapped in StatusSNS
        ("stat/p/STATUS10", b'{"StatusSNS":"none"}', BAD_VALUE),
        ("tele/p/SENSOR", energy_bytes(Power=None), MISSING_FIELD),
        ("tele/p/SENSOR", energy_bytes(Total=None), MISSING_FIELD),
        ("tele/p/SENSOR", energy_bytes(Power="76"), BAD_VALUE),
        ("tele/p/SENSOR", energy_bytes(Total="94.493"), BAD_VALUE),
        ("tele/p/SENSOR", energy_bytes(Power=[]), BAD_VALUE),
        ("tele/p/SENSOR", energy_bytes(Power=[298, "7", 0]), BAD_VALUE),
        ("tele/p/SENSOR", energy_bytes(Power=[298, None, 0]), BAD_VALUE),
        ("tele/p/SENSOR", energy_bytes(Power={"L1": 76}), BAD_VALUE),
        ("tele/p/SENSOR", energy_bytes(Power=-76), NEGATIVE),
        ("tele/p/SENSOR", energy_bytes(Power=[-298, 7, 0]), NEGATIVE),
        ("tele/p/SENSOR", energy_bytes(Total=-1.0), NEGATIVE),
        ("tele/p/SENSOR", TASMOTA_REAL.replace(b'"Power":76', b'"Power":NaN'), NAN),
        ("tele/p/SENSOR", TASMOTA_REAL.replace(b'"Total":94.493', b'"Total":Infinity'), NAN),
        ("tele/p/SENSOR", TASMOTA_REAL.replace(b'"Power":76', b'"Power":[298,NaN,0]'), NAN),
        ("tele/p/SENSOR", TASMOTA_REAL.replace(b'"ApparentPower":102', b'"ApparentPower":-102'), NEGATIVE),
        ("tele/p/SENSOR", TASMOTA_REAL.replace(b"2019-03-01T11:04:47", b"yesterday"), BAD_VALUE),
        ("tele/p/SENSOR", TASMOTA_REAL.replace(b'"2019-03-01T11:04:47"', b"1551434687"), BAD_VALUE),
    ],
)
def test_tasmota_bad_input_is_rejected(topic, payload, reason):
    with rejected(reason):
        tasmota.parse(topic, payload)


@pytest.mark.parametrize(
    ("t", "tz", "apparent"),
    [
        (1_705_312_800.0, "Europe/Paris", None),  # winter, no apparent power measured
        (1_720_000_000.0, "Europe/Paris", 1630.0),  # summer time
        (1_720_000_000.0, "America/New_York", 12.5),
    ],
)
def test_tasmota_builder_round_trip(t, tz, apparent):
    message = tasmota.sensor_message(
        power_w=1523.0,
        total_kwh=8123.457,
        t=t,
        tz=tz,
        apparent_va=apparent,
        today_kwh=3.25,
        yesterday_kwh=7.5,
        period_wh=42.0,
    )
    assert message["ENERGY"]["TotalStartTime"] == "2024-01-01T00:00:00"
    assert ("ApparentPower" in message["ENERGY"]) == (apparent is not None)
    got = tasmota.parse("tele/plug/SENSOR", json.dumps(message).encode(), tz=tz)
    assert got == Reading(power_w=1523.0, apparent_va=apparent, energy_wh=8123457.0, time=t)
    wrapped = json.dumps({"StatusSNS": message}).encode()
    assert tasmota.parse("stat/plug/STATUS10", wrapped, tz=tz) == got


def test_tasmota_builder_time_is_local_without_offset_to_the_second():
    message = tasmota.sensor_message(power_w=76.0, total_kwh=94.493, t=1551434687.9)
    assert message["Time"] == "2019-03-01T11:04:47"
    assert reading("tele/p/SENSOR", json.dumps(message).encode()).time == 1551434687.0
