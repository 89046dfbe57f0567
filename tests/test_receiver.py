"""The webhook receiver in-thread (no process): it keeps what Alertmanager sends, durably,
lists it back filtered, survives a restart, and refuses bodies that are not webhooks."""

from __future__ import annotations

import copy
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from alertmanager.receiver import PAGE_ALERTS, Store, describe, serve

# The shape Alertmanager 0.25.0 posts (captured from the Debian package; its fields are those of
# alertmanager v0.25.0's notify/webhook/webhook.go), on the "warning" route: one sensor's
# alert, grouped by alertname and sensor.
PAYLOAD: dict[str, Any] = {
    "receiver": "warning",
    "status": "firing",
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "HomewattSensorSilent", "sensor": "s-007", "severity": "warning"},
            "annotations": {"summary": "s-007 sent nothing for 5 minutes", "description": "..."},
            "startsAt": "2024-05-01T10:00:00.000Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus:9090/graph?g0.expr=x",
            "fingerprint": "94ec908208112af9",
        }
    ],
    "groupLabels": {"alertname": "HomewattSensorSilent", "sensor": "s-007"},
    "commonLabels": {"alertname": "HomewattSensorSilent", "sensor": "s-007", "severity": "warning"},
    "commonAnnotations": {"summary": "s-007 sent nothing for 5 minutes", "description": "..."},
    "externalURL": "http://127.0.0.1:9093",
    "version": "4",
    "groupKey": '{}/{severity="warning"}:{alertname="HomewattSensorSilent", sensor="s-007"}',
    "truncatedAlerts": 0,
}


def payload(alertname: str, sensor: str | None, status: str = "firing", **labels: str) -> dict[str, Any]:
    doc = copy.deepcopy(PAYLOAD)
    alert = doc["alerts"][0]
    alert["status"] = doc["status"] = status
    alert["labels"] = {"alertname": alertname, "severity": "warning", **labels}
    if sensor:
        alert["labels"]["sensor"] = sensor
    alert["annotations"]["summary"] = f"{alertname} on {sensor}"
    return doc


class Receiver:
    """A receiver on a free port in this process, storing under `data`."""

    def __init__(self, data: Path):
        self.store = Store(data)
        self.server = serve(self.store, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def post(self, path: str, body: bytes | dict | list) -> requests.Response:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return requests.post(
            self.url + path, data=data, headers={"Content-Type": "application/json"}, timeout=5
        )

    def alerts(self, **filters: str) -> list[dict[str, Any]]:
        r = requests.get(f"{self.url}/alerts", params=filters, timeout=5)
        assert r.status_code == 200, r.text
        return r.json()["notifications"]

    def count(self) -> int:
        return requests.get(f"{self.url}/healthz", timeout=5).json()["notifications"]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    r = Receiver(tmp_path)
    yield r
    r.stop()


def test_a_real_payload_is_stored_and_listed(receiver, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="alertmanager.receiver"):
        r = receiver.post("/webhook/warning", PAYLOAD)
    assert r.status_code == 200 and r.json() == {"stored": 1}
    (got,) = receiver.alerts()
    assert got["route"] == "warning" and isinstance(got["received_at"], float)
    for key in ("receiver", "status", "groupLabels", "commonLabels", "alerts", "groupKey", "truncatedAlerts"):
        assert got[key] == PAYLOAD[key], key
    # On disk: one line, the same record.
    lines = (tmp_path / "alerts" / "notifications.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [got]
    assert receiver.count() == 1
    assert (
        "FIRING HomewattSensorSilent severity=warning sensor=s-007: s-007 sent nothing for 5 minutes"
        in caplog.messages
    )


def test_the_root_route_is_stored_as_empty(receiver):
    assert receiver.post("/webhook", payload("HomewattExporterDown", None)).status_code == 200
    assert receiver.post("/webhook/", payload("HomewattExporterDown", None)).status_code == 200
    assert [n["route"] for n in receiver.alerts()] == ["", ""]


def test_describe_says_resolved_and_leaves_out_missing_labels():
    alert = {"status": "resolved", "labels": {"alertname": "HomewattExporterDown"}, "annotations": {}}
    assert describe(alert) == "RESOLVED HomewattExporterDown"


def test_filters_keep_notifications_with_a_matching_alert_and_only_those_alerts(receiver):
    two = payload("HomewattSensorSilent", "s-001")
    two["alerts"].append(copy.deepcopy(two["alerts"][0]))
    two["alerts"][1]["labels"]["sensor"] = "s-002"
    two["alerts"][1]["status"] = "resolved"
    assert receiver.post("/webhook/warning", two).status_code == 200
    assert receiver.post("/webhook/critical", payload("HomewattDeviceStale", "s-001")).status_code == 200

    assert len(receiver.alerts()) == 2
    (n,) = receiver.alerts(sensor="s-002")
    assert [a["labels"]["sensor"] for a in n["alerts"]] == ["s-002"]
    assert [len(n["alerts"]) for n in receiver.alerts(sensor="s-001")] == [1, 1]
    (n,) = receiver.alerts(status="resolved")
    assert n["alerts"][0]["labels"]["sensor"] == "s-002"
    assert [n["route"] for n in receiver.alerts(status="firing")] == ["warning", "critical"]
    (n,) = receiver.alerts(alertname="HomewattDeviceStale")
    assert n["route"] == "critical"
    assert receiver.alerts(alertname="HomewattSensorSilent", sensor="s-002", status="firing") == []
    (n,) = receiver.alerts(route="critical")
    assert n["alerts"][0]["labels"]["alertname"] == "HomewattDeviceStale"
    last = receiver.alerts()[-1]["received_at"]
    assert [n["route"] for n in receiver.alerts(since=str(last))] == ["critical"]
    assert receiver.alerts(since=str(last + 1)) == []


@pytest.mark.parametrize(
    ("query", "detail"),
    [
        ({"status": "pending"}, "status must be firing or resolved"),
        ({"since": "yesterday"}, "since must be a Unix time"),
        ({"severity": "critical"}, "unknown filter severity"),
    ],
)
def test_a_bad_filter_is_a_400(receiver, query, detail):
    r = requests.get(f"{receiver.url}/alerts", params=query, timeout=5)
    assert r.status_code == 400 and r.headers["Content-Type"] == "application/problem+json"
    assert detail in r.json()["detail"]


def test_notifications_survive_a_restart(tmp_path):
    first = Receiver(tmp_path)
    try:
        assert first.post("/webhook/warning", payload("A", "s-001")).status_code == 200
        assert first.post("/webhook/critical", payload("B", "s-002")).status_code == 200
        before = first.alerts()
    finally:
        first.stop()
    second = Receiver(tmp_path)
    try:
        assert second.alerts() == before and second.count() == 2
        assert second.post("/webhook/info", payload("C", "s-003")).status_code == 200
        assert [n["alerts"][0]["labels"]["alertname"] for n in second.alerts()] == ["A", "B", "C"]
    finally:
        second.stop()


def bad_alert(**change: Any) -> dict[str, Any]:
    doc = copy.deepcopy(PAYLOAD)
    doc["alerts"][0].update(change)
    doc["alerts"][0] = {k: v for k, v in doc["alerts"][0].items() if v is not None}
    return doc


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"not json", "body is not JSON"),
        (b"", "body is not JSON"),
        ([PAYLOAD], "body must be a JSON object"),
        ({"receiver": "x", "status": "firing"}, "no `alerts` list"),
        ({**PAYLOAD, "alerts": {"a": 1}}, "no `alerts` list"),
        ({**PAYLOAD, "alerts": ["x"]}, "alerts[0] must be an object"),
        (bad_alert(labels=None), "alerts[0] has no labels"),
        (bad_alert(status=None, annotations=None), "alerts[0] has no status, annotations"),
        (bad_alert(status="pending"), "alerts[0].status must be firing or resolved"),
        (bad_alert(labels=["sensor"]), "alerts[0].labels must be an object of strings"),
        (bad_alert(labels={"sensor": 7}), "alerts[0].labels must be an object of strings"),
        (bad_alert(annotations="down"), "alerts[0].annotations must be an object of strings"),
        ({**PAYLOAD, "groupLabels": []}, "groupLabels must be an object of strings"),
    ],
)
def test_a_bad_body_is_a_400_and_nothing_is_stored(receiver, tmp_path, caplog, body, detail):
    with caplog.at_level(logging.WARNING, logger="alertmanager.receiver"):
        r = receiver.post("/webhook/warning", body)
    assert r.status_code == 400 and r.headers["Content-Type"] == "application/problem+json"
    assert r.json()["status"] == 400 and detail in r.json()["detail"]
    assert [m for m in caplog.messages if m.startswith("rejected POST /webhook/warning")] == [
        f"rejected POST /webhook/warning: {r.json()['detail']}"
    ]
    assert receiver.alerts() == [] and receiver.count() == 0
    assert not (tmp_path / "alerts" / "notifications.jsonl").exists()


@pytest.mark.parametrize("path", ["/webhooks", "/webhook/a/b", "/webhook/bad%20name", "/alerts"])
def test_a_post_elsewhere_is_a_404(receiver, path):
    r = receiver.post(path, PAYLOAD)
    assert r.status_code == 404 and r.headers["Content-Type"] == "application/problem+json"
    assert receiver.count() == 0


def test_a_truncated_last_line_is_skipped_and_the_next_write_starts_a_new_line(tmp_path, caplog):
    first = Receiver(tmp_path)
    try:
        assert first.post("/webhook/warning", payload("A", "s-001")).status_code == 200
    finally:
        first.stop()
    path = tmp_path / "alerts" / "notifications.jsonl"
    good = path.read_text()
    line = good.splitlines()[0]
    path.write_text(good + line[: len(line) // 2])  # killed mid-write, before it answered
    with caplog.at_level(logging.WARNING, logger="alertmanager.receiver"):
        second = Receiver(tmp_path)
    try:
        assert [n["alerts"][0]["labels"]["alertname"] for n in second.alerts()] == ["A"]
        assert second.count() == 1
        assert any("line 2 skipped" in m for m in caplog.messages)
        assert second.post("/webhook/warning", payload("B", "s-002")).status_code == 200
        assert [n["alerts"][0]["labels"]["alertname"] for n in second.alerts()] == ["A", "B"]
        assert [m for m in caplog.messages if "skipped" in m] == [caplog.messages[0]]  # warned once
    finally:
        second.stop()


def test_a_write_that_fails_is_a_500_and_leaves_no_partial_line(receiver, tmp_path, monkeypatch):
    assert receiver.post("/webhook/warning", payload("A", "s-001")).status_code == 200

    def broken(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("alertmanager.receiver.os.fsync", broken)
    r = receiver.post("/webhook/warning", payload("B", "s-002"))
    assert r.status_code == 500 and "No space left" in r.json()["detail"]  # Alertmanager retries a 5xx
    monkeypatch.undo()
    assert [n["alerts"][0]["labels"]["alertname"] for n in receiver.alerts()] == ["A"]
    assert (tmp_path / "alerts" / "notifications.jsonl").read_text().count("\n") == 1


def test_the_page_lists_the_latest_alerts_newest_first(receiver):
    assert "No notification yet" in requests.get(receiver.url + "/", timeout=5).text
    for i in range(PAGE_ALERTS + 5):
        body = payload(f"Alert{i}", "s-<b>", status="resolved" if i % 2 else "firing")
        assert receiver.post("/webhook/warning", body).status_code == 200
    r = requests.get(receiver.url + "/", timeout=5)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html")
    assert r.text.count("<tr><td>") == PAGE_ALERTS
    assert r.text.index(f"Alert{PAGE_ALERTS + 4}<") < r.text.index(f"Alert{PAGE_ALERTS}<")
    assert "Alert4<" not in r.text and "s-&lt;b&gt;" in r.text and "<b>" not in r.text


def test_healthz_and_unknown_paths(receiver):
    assert requests.get(receiver.url + "/healthz", timeout=5).json() == {"notifications": 0}
    r = requests.get(receiver.url + "/nope", timeout=5)
    assert r.status_code == 404 and r.headers["Content-Type"] == "application/problem+json"
