"""What a device reading may change in the served series: the checks shared by every protocol."""

from __future__ import annotations

import pytest

from devices.reading import Reading, Rejected
from devices.state import DEFAULT_MAX_POWER_W, JUMP_CONFIRM, SUBSCRIPTION_MARGIN, DeviceState, PowerFactor
from homewatt.fleet import Device, FleetError, parse_fleet


class Clock:
    def __init__(self, t: float = 1_790_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def state(fmt: str = "shelly", **device: object) -> tuple[DeviceState, Clock]:
    clock = Clock()
    return DeviceState("m-1", Device(format=fmt, **device), clock), clock  # type: ignore[arg-type]


def test_a_fresh_reading_is_served_and_a_silent_device_drops_out():
    s, clock = state(stale_after_s=10)
    assert s.offer(Reading(power_w=812.0, energy_wh=1500.25))
    v = s.values()
    assert (v.power_w, v.energy_j, v.last_seen) == (812.0, 1500.25 * 3600, clock.t)
    seen = clock.t
    clock.t += 10
    assert s.values().power_w == 812.0  # at the limit: still served
    clock.t += 0.5
    v = s.values()
    assert (v.power_w, v.apparent_va, v.energy_j) == (None, None, None)  # stale: nothing is repeated
    assert v.last_seen == seen  # but when it was last heard is still told


def test_a_reading_from_the_future_is_rejected_and_counted():
    s, clock = state()
    assert not s.offer(Reading(power_w=100.0, energy_wh=1.0, time=clock.t + 3600))
    assert s.rejected["future"] == 1 and s.last_seen is None
    assert s.offer(Reading(power_w=100.0, energy_wh=1.0, time=clock.t + 30))  # clock drift is tolerated


def test_power_above_what_the_home_can_draw_is_implausible():
    s, _ = state(max_power_w=9000)
    assert not s.offer(Reading(power_w=9001.0))
    assert s.offer(Reading(power_w=9000.0))
    assert s.rejected["implausible"] == 1
    default, _ = state()
    assert not default.offer(Reading(power_w=DEFAULT_MAX_POWER_W * SUBSCRIPTION_MARGIN + 1))


def test_a_linky_s_own_subscription_bounds_its_apparent_power():
    s, _ = state("tic", port="/dev/ttyUSB0")
    assert s.offer(Reading(apparent_va=1000.0, energy_wh=10.0, max_power_w=6000.0))
    assert not s.offer(
        Reading(apparent_va=6000 * SUBSCRIPTION_MARGIN + 10, energy_wh=10.0, max_power_w=6000.0)
    )
    assert s.rejected["implausible"] == 1


def test_an_index_going_back_is_a_counter_reset_and_is_served():
    s, clock = state()
    s.offer(Reading(power_w=100.0, energy_wh=5000.0))
    clock.t += 1
    assert s.offer(Reading(power_w=100.0, energy_wh=3.0))
    assert s.values().energy_j == 3.0 * 3600


def test_an_index_leap_is_rejected_unless_the_next_readings_confirm_it():
    s, clock = state(max_power_w=10_000)
    s.offer(Reading(power_w=100.0, energy_wh=1000.0))
    clock.t += 1
    # 10 kW for 3 s (1 s elapsed + 2 s slack) is 8.3 Wh at most.
    assert s.offer(Reading(power_w=100.0, energy_wh=1008.0))
    clock.t += 1
    assert not s.offer(Reading(power_w=100.0, energy_wh=1100.0))
    assert s.values().energy_j == 1008.0 * 3600
    for i in range(1, JUMP_CONFIRM - 1):
        clock.t += 1
        assert not s.offer(Reading(power_w=100.0, energy_wh=1100.0 + i))
    clock.t += 1
    assert s.offer(Reading(power_w=100.0, energy_wh=1100.0 + JUMP_CONFIRM))  # it stayed: the new level
    assert s.values().energy_j == (1100.0 + JUMP_CONFIRM) * 3600
    assert s.rejected["implausible"] == JUMP_CONFIRM - 1


def test_a_lone_spike_in_the_index_does_not_move_the_counter():
    s, clock = state(max_power_w=10_000)
    s.offer(Reading(power_w=100.0, energy_wh=1000.0))
    for wh in (1000.1, 99_999.0, 1000.2, 1000.3, 1000.4, 1000.5, 1000.6):
        clock.t += 1
        s.offer(Reading(power_w=100.0, energy_wh=wh))
    assert s.values().energy_j == pytest.approx(1000.6 * 3600)
    assert s.rejected["implausible"] == 1


def test_a_power_only_message_keeps_the_last_index():
    s, _ = state(component="em:0")
    s.offer(Reading(power_w=100.0, energy_wh=42.0))
    s.offer(Reading(power_w=250.0))
    v = s.values()
    assert (v.power_w, v.energy_j) == (250.0, 42.0 * 3600)


def test_reject_counts_by_reason():
    s, _ = state()
    for _ in range(3):
        s.reject(Rejected("not_json", "x"))
    s.reject(Rejected("nan", "y"))
    assert {k: v for k, v in s.rejected.items() if v} == {"not_json": 3, "nan": 1}


def test_the_power_factor_comes_from_the_index_and_the_apparent_power():
    """A Linky at a steady 2000 VA whose index counts 1800 W: PF 0.9, served as 1800 W."""
    pf = PowerFactor(window_s=1800, min_wh=20)
    t, wh = 0.0, 10_000.0
    for _ in range(60):  # one minute: 30 Wh counted
        pf.add(t, 2000.0, int(wh))
        t += 1.0
        wh += 1800 / 3600
    assert pf.ratio == pytest.approx(0.9, abs=0.02)


def test_a_linky_serves_no_active_power_until_its_index_has_moved_enough():
    s, clock = state("tic", port="/dev/ttyUSB0")
    wh = 5000.0
    served = []
    for _ in range(120):
        s.offer(Reading(apparent_va=1000.0, energy_wh=float(int(wh))))
        served.append(s.values().power_w)
        clock.t += 1
        wh += 950 / 3600
    assert served[0] is None and served[30] is None  # 8 Wh: too few to tell
    assert served[-1] == pytest.approx(950.0, rel=0.06)  # VA x the meter's own power factor
    assert s.values().apparent_va == 1000.0


@pytest.mark.parametrize(
    ("device", "message"),
    [
        ({"format": "shelly", "topic": "x"}, "needs 'broker'"),
        ({"format": "shelly", "broker": "http://h:1", "topic": "x"}, "expected mqtt://host:port"),
        ({"format": "tasmota", "broker": "mqtt://h:1883", "topic": "tele/#"}, "no wildcard"),
        ({"format": "tic"}, "needs 'port'"),
        ({"format": "tic", "port": "/dev/ttyUSB0", "mode": "fast"}, "mode"),
        ({"format": "zigbee"}, "format"),
        ({"format": "shelly", "broker": "mqtt://h:1883", "topic": "x", "stale_after_s": 0}, "stale_after_s"),
        ({"format": "tic", "port": "/dev/ttyUSB0", "broker": "mqtt://h:1883"}, "MQTT devices"),
    ],
)
def test_a_bad_device_entry_is_refused_with_its_place(device, message):
    doc = {"sensors": [{"id": "m-1", "home": "x", "device": device}]}
    with pytest.raises(FleetError, match=message) as err:
        parse_fleet(doc)
    assert "sensors[0] (id 'm-1').device" in str(err.value) or "sensors[0] (id 'm-1')" in str(err.value)


def test_a_device_entry_needs_no_model():
    doc = {"sensors": [{"id": "m-1", "home": "x", "device": {"format": "tic", "port": "/dev/ttyUSB0"}}]}
    fleet = parse_fleet(doc)
    assert fleet.modelled == () and [s.id for s in fleet.devices] == ["m-1"]
    assert fleet.devices[0].device == Device(format="tic", port="/dev/ttyUSB0")


def test_the_default_fleet_has_one_of_each_source():
    from homewatt.fleet import load_fleet

    fleet = load_fleet()
    kinds = {s.device.format if s.device else ("replay" if s.replay else "model") for s in fleet.sensors}
    assert kinds == {"model", "replay", "shelly", "tic"}
    assert all(s.device.simulated for s in fleet.devices if s.device)
