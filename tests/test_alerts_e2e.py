"""Alerts end to end, on real processes started the way `make up` starts them: the exporter,
a real mosquitto with the device simulator, Prometheus under its Thanos sidecar, the Thanos
tier, the Pushgateway, the reference partner, Alertmanager and the project's receiver.

What a person would check: a silenced meter's HomewattSensorSilent reaches the receiver
and resolves there when the meter is back; a payload the partner refuses for good raises
HomewattPartnerRejected at the receiver; every query of the Fleet health dashboard returns
data from this real stack.  Alertmanager's waits are shortened (alertmanager/config.py's
Timings); the rules' own `for` and intervals are the committed ones.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from alertmanager.config import Timings as AlertTimings
from homewatt import promapi
from homewatt.config import Settings, hostport
from homewatt.contract import (
    BACKFILL_DONE,
    BACKFILL_PLANNED,
    OUTBOX_REJECTED,
    PARTNER_LAST_SUCCESS,
    SILENT,
    STREAM_LABEL,
)
from homewatt.procs import free_port, wait_until
from homewatt.window import last_fire_time
from partner_job import job
from partner_job.client import PartnerClient
from stack import status
from stack.__main__ import backfill_history, wait_for_live_data
from stack.services import Stack
from stack.supervisor import Service, Supervisor
from stack.thanos import BINARY, Thanos, Timings

from . import bucket_setup
from . import grafana_emulation as ge
from .conftest import query_until, stack_env, thanos_env, today_utc
from .test_grafana import dashboards

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not BINARY.exists(), reason="bin/thanos is built by `make thanos`"),
]

FAST = AlertTimings(group_wait="1s", group_interval="2s", repeat_interval="1h")
SILENCED = "m-shelly"
REFUSED, DELIVERED = "s-001", "s-002"
# A rule only this test gives the Ruler beside its own files: it fires at once, so that
# the Ruler's path to Alertmanager (the one HomewattUnusualConsumption takes) is seen working.
RULER_PROBE = {
    "groups": [
        {
            "name": "e2e-ruler-probe",
            "interval": "15s",
            "rules": [
                {
                    "alert": "E2ERulerProbe",
                    "expr": f'max by (sensor) (last_over_time(elec_energy_joules_total{{sensor="{DELIVERED}"}}[5m])) > 0',
                    "labels": {"severity": "info"},
                    "annotations": {"summary": "the Ruler evaluates through Query and notifies"},
                }
            ],
        }
    ]
}


def fleet_doc(broker: str) -> dict[str, Any]:
    day = today_utc().isoformat()
    return {
        "timezone": "Europe/Paris",
        "sensors": [
            {"id": REFUSED, "home": "modelled", "seed": 101, "index_date": day, "index_kwh": 31250.4},
            {"id": DELIVERED, "home": "modelled", "seed": 102, "index_date": day, "index_kwh": 8021.0},
            {
                "id": SILENCED,
                "home": "test",
                "seed": 11,
                "index_date": day,
                "index_kwh": 1000.0,
                "device": {"format": "shelly", "broker": broker, "topic": "shelly-e2e", "simulated": True},
            },
        ],
    }


class E2E:
    def __init__(
        self, settings: Settings, sup: Supervisor, stack: Stack, simulator: Service, silenced_at: float
    ):
        self.settings = settings
        self.sup = sup
        self.stack = stack
        self.simulator = simulator
        self.silenced_at = silenced_at  # when the Shelly's simulator was stopped
        self.receiver = f"http://{settings.receiver_listen}"

    def notifications(self, **filters: str) -> list[dict[str, Any]]:
        got = requests.get(f"{self.receiver}/alerts", params=filters, timeout=5)
        got.raise_for_status()
        return list(got.json()["notifications"])

    def alerts(self, alertname: str, status: str, **labels: str) -> list[dict[str, Any]]:
        """Every alert of that name and status the receiver got, whose labels include `labels`,
        with the time its notification arrived (`received_at`)."""
        return [
            {**a, "received_at": n["received_at"]}
            for n in self.notifications(alertname=alertname, status=status)
            for a in n["alerts"]
            if a["labels"].get("alertname") == alertname
            and a["status"] == status
            and all(a["labels"].get(k) == v for k, v in labels.items())
        ]


@pytest.fixture(scope="module")
def e2e(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2E]:
    root = tmp_path_factory.mktemp("alerts")
    broker_port = free_port()
    fleet_file = root / "fleet.yaml"
    fleet_file.write_text(yaml.safe_dump(fleet_doc(f"mqtt://127.0.0.1:{broker_port}"), sort_keys=False))
    env = thanos_env(stack_env(root / "data", fleet_file))
    # A small history: enough for the backfill's chunks and the partner's window.
    env |= {"HOMEWATT_RAW_DAYS": "0.25", "HOMEWATT_HISTORY_DAYS": "2"}
    settings = Settings.from_env({**os.environ, **env})
    stack = Stack(settings)
    probe = root / "ruler-probe.rules.yml"
    probe.write_text(yaml.safe_dump(RULER_PROBE))
    thanos = Thanos(settings, timings=Timings(**{**bucket_setup.TEST_TIMINGS, "store_sync": "5s"}))
    thanos = Thanos(settings, timings=thanos.timings, rule_files=(*thanos.rule_files, probe))
    (stack.data / "pushgateway").mkdir(parents=True, exist_ok=True)
    with Supervisor(stack.data / "logs") as sup:
        host, port = hostport(settings.stack_listen)  # the runner's /metrics: parts and bucket
        metrics = status.serve(sup, host, port, thanos.bucket)
        threading.Thread(target=metrics.serve_forever, daemon=True).start()
        simulator = stack.simulator()
        for service in (
            stack.receiver(),
            stack.alertmanager(FAST),
            stack.pushgateway(),
            stack.mosquitto("127.0.0.1", broker_port),
            simulator,
            stack.exporter(),
            stack.prometheus(),
        ):
            sup.run(service)
        wait_for_live_data([settings.prometheus_url], 2)
        for service in thanos.services():
            sup.run(service)
        backfill_history(settings, thanos)
        sup.run(stack.partner())
        try:
            # The Shelly is unplugged now: its alert takes over two minutes, which the other
            # tests use for theirs; the last test waits for the rest.
            sup.stop_one(simulator)
            yield E2E(settings, sup, stack, simulator, time.time())
        finally:
            metrics.shutdown()
            metrics.server_close()


def test_the_ruler_sends_its_alerts_to_alertmanager_without_the_stream_label(e2e: E2E) -> None:
    """The home owner's alert runs in the Ruler (it needs weeks of history): its alerts take
    the Ruler's own path to Alertmanager, shown here by a probe rule that fires at once."""
    (alert,) = wait_until(
        lambda: e2e.alerts("E2ERulerProbe", "firing", sensor=DELIVERED),
        120,
        "the Ruler's probe alert at the receiver",
        interval=2,
    )
    assert STREAM_LABEL not in alert["labels"]  # --alert.label-drop, as Prometheus's relabelling
    assert alert["labels"]["severity"] == "info"
    assert alert["generatorURL"].startswith(e2e.settings.history_url)  # --alert.query-url


def send_last_night(e2e: E2E) -> job.Stats:
    """The nightly job for the two modelled homes, the partner refusing REFUSED's payload for good."""
    env = e2e.stack.partner_env()
    token = Path(env["PARTNER_TOKEN_FILE"]).read_text().strip()
    fault = {"mode": "422", "key": f"{REFUSED}:", "count": 1}
    requests.post(
        f"{e2e.settings.partner_url}/_faults",
        json=fault,
        headers={"Authorization": f"Bearer {token}"},
        timeout=5,
    ).raise_for_status()
    midnight = last_fire_time(dt.datetime.now(dt.UTC))
    client = PartnerClient(e2e.settings.partner_url, token)
    return job.run(e2e.settings, [REFUSED, DELIVERED], midnight, client, progress=False)


def test_a_payload_refused_for_good_reaches_the_receiver(e2e: E2E) -> None:
    stats = send_last_night(e2e)
    assert (stats.delivered, stats.rejected) == (1, 1), stats.problems
    query_until(e2e.settings.prometheus_url, f'{OUTBOX_REJECTED.name}{{sensor="{REFUSED}"}} == 1', 1, 60)
    (alert,) = wait_until(
        lambda: e2e.alerts("HomewattPartnerRejected", "firing", sensor=REFUSED),
        180,
        "HomewattPartnerRejected at the receiver",
        interval=2,
    )
    assert alert["labels"]["severity"] == "warning"
    assert REFUSED in alert["annotations"]["description"]
    assert "1 payload(s) refused" in alert["annotations"]["description"]
    assert not e2e.alerts("HomewattPartnerRejected", "firing", sensor=DELIVERED)


def test_a_silenced_meter_alerts_then_resolves_and_fleet_health_shows_it(e2e: E2E) -> None:
    prom = e2e.settings.prometheus_url
    stopped = e2e.silenced_at
    (alert,) = wait_until(
        lambda: e2e.alerts("HomewattSensorSilent", "firing", sensor=SILENCED),
        300,
        f"HomewattSensorSilent for {SILENCED} at the receiver",
        interval=2,
    )
    took = alert["received_at"] - stopped
    # 10 s to go stale, then 2 minutes of `for`, evaluated every 15 s.
    assert 130 <= took <= 240, took
    broker = e2e.stack.fleet.devices[0].device.broker  # type: ignore[union-attr]
    assert alert["labels"]["source"] == broker
    assert alert["labels"]["severity"] == "warning"
    assert SILENCED in alert["annotations"]["description"]
    # Only the silenced meter: the modelled homes report throughout.
    assert {a["labels"]["sensor"] for a in e2e.alerts("HomewattSensorSilent", "firing")} == {SILENCED}
    (silent,) = promapi.query(prom, SILENT.name)
    assert silent["metric"]["sensor"] == SILENCED
    assert float(silent["value"][1]) == pytest.approx(time.time() - stopped, abs=75)

    # While it is silent, every Fleet health query answers from this stack.
    now = dt.datetime.now(dt.UTC)
    urls = {"homewatt-prometheus": prom, "homewatt-history": e2e.settings.history_url}
    empty = []
    for q in ge.queries(dashboards()["fleet-health"], now, SILENCED):
        url = urls[q.datasource]
        got = (
            promapi.query(url, q.expr, at=q.end)
            if q.instant
            else promapi.query_range(url, q.expr, q.start, q.end, q.step)
        )
        if not got:
            empty.append(f"{q.panel}: {q.expr}")
    assert empty == []
    # What the backfill panel says: every planned chunk written (the journal's count, pushed).
    (backfill,) = promapi.query(prom, f"{BACKFILL_DONE.name} / {BACKFILL_PLANNED.name}")
    assert float(backfill["value"][1]) == 1.0
    (landed,) = promapi.query(prom, f'time() - {PARTNER_LAST_SUCCESS.name}{{sensor="{DELIVERED}"}}')
    assert 0 <= float(landed["value"][1]) < 600

    e2e.sup.run(e2e.stack.simulator())
    back = time.time()
    (resolved,) = wait_until(
        lambda: e2e.alerts("HomewattSensorSilent", "resolved", sensor=SILENCED),
        120,
        f"HomewattSensorSilent for {SILENCED} resolved at the receiver",
        interval=2,
    )
    assert resolved["received_at"] - back < 90
    assert promapi.query(prom, SILENT.name) == []
