from pathlib import Path

import pytest
import yaml

from homewatt.fleet import DEFAULT_FLEET, FleetError, load_fleet, parse_fleet


def default_doc() -> dict:
    return yaml.safe_load(DEFAULT_FLEET.read_text())


def test_default_fleet_has_five_modelled_homes_one_replayed_and_two_devices():
    fleet = load_fleet()
    assert len(fleet) == 8
    assert len(set(fleet.ids())) == 8
    assert [s.id for s in fleet.devices] == ["s-007", "s-008"]
    modelled = [s for s in fleet.modelled if s.replay is None]
    assert len(modelled) == 5
    assert {s.heating.type for s in modelled} == {"electric", "heat_pump", "none"}
    with_heater = [s for s in modelled if s.water_heater]
    assert 0 < len(with_heater) < 5
    (real,) = [s for s in fleet.sensors if s.replay]
    assert real.replay is not None and real.replay.dataset == "uci-household"
    assert all(s.timezone == "Europe/Paris" for s in fleet.sensors)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda d: d["sensors"][1].update(heatting={}),
            r"sensors\[1\] \(id 's-002'\): unknown key\(s\) 'heatting'",
        ),
        (lambda d: d["sensors"][2].update(id="s-001"), r"sensors\[2\]: duplicate sensor id 's-001'"),
        (lambda d: d["sensors"][0].update(id="S_01"), r"sensors\[0\] \(id 'S_01'\): sensor id 'S_01' is not"),
        (lambda d: d["sensors"][0].update(id="x" * 65), r"is not \[a-z0-9-\]\{1,64\}"),
        (
            lambda d: d["sensors"][3]["heating"].update(kind="x"),
            r"sensors\[3\] \(id 's-004'\)\.heating: unknown",
        ),
        (lambda d: d["sensors"][0].pop("seed"), r"sensors\[0\] \(id 's-001'\): missing key\(s\) 'seed'"),
        (lambda d: d["sensors"][0].update(noise_w=500), r"noise_w: expected a number"),
        (lambda d: d.update(colour="blue"), r"unknown key\(s\) 'colour'"),
        (lambda d: d.update(timezone="Mars/Olympus"), r"timezone 'Mars/Olympus' is not a known zone"),
        (lambda d: d["sensors"][0].update(index_date="yesterday"), r"index_date"),
        (
            lambda d: d["sensors"][5]["replay"].update(dataset="nope"),
            r"sensors\[5\] \(id 's-006'\)\.replay: unknown replay dataset 'nope'",
        ),
        (
            lambda d: d["sensors"][5]["replay"].update(start="2022-12-17T16:24:00"),
            r"replay\.start: give a UTC offset",
        ),
    ],
)
def test_bad_fleet_is_refused_naming_the_entry(mutate, message):
    doc = default_doc()
    mutate(doc)
    with pytest.raises(FleetError, match=message):
        parse_fleet(doc)


def test_load_fleet_reports_the_file(tmp_path: Path):
    bad = tmp_path / "fleet.yaml"
    bad.write_text("sensors: [")
    with pytest.raises(FleetError, match=str(bad)):
        load_fleet(bad)
