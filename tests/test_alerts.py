"""Every alert follows the conventions its readers rely on (the monitoring-mixins guidelines):
a Homewatt… name, a severity Alertmanager routes on, a summary, a description, a runbook
entry that exists, and a promtool test that checks it firing.  `make rules-test` runs
those tests; this checks none is missing."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from homewatt.config import REPO

RULES = REPO / "rules"
SEVERITIES = {"critical", "warning", "info"}


def alerts() -> list[tuple[Path, dict[str, Any]]]:
    return [
        (path, rule)
        for path in sorted(RULES.glob("*.rules.yml"))
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]


def runbook_anchors() -> set[str]:
    """The anchors GitHub makes of docs/alerts.md's headings (a lower-cased alert name)."""
    text = (REPO / "docs" / "alerts.md").read_text()
    return {h.strip().lower() for h in re.findall(r"^#{2,4}\s+(\S+)\s*$", text, re.M)}


def fired_in_tests() -> set[str]:
    """Alert names some promtool test expects firing (exp_alerts not empty)."""
    names = set()
    for path in sorted((RULES / "tests").glob("*.test.yml")):
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                if case.get("exp_alerts"):
                    names.add(case["alertname"])
    return names


def test_there_are_alerts_for_every_part():
    names = {rule["alert"] for _, rule in alerts()}
    for required in (
        "HomewattExporterDown",
        "HomewattSensorSilent",
        "HomewattLiveLagging",
        "HomewattNightlyExportLate",
        "HomewattPartnerOutboxBacklog",
        "HomewattPartnerRejected",
        "HomewattBackfillIncomplete",
        "HomewattThanosCompactHalted",
        "HomewattThanosBucketOperationsFailing",
        "HomewattThanosBlocksNotUploaded",
        "HomewattThanosQueryErrors",
        "HomewattThanosStoreErrors",
        "HomewattUnusualConsumption",
    ):
        assert required in names


@pytest.mark.parametrize(("path", "rule"), alerts(), ids=lambda x: x["alert"] if isinstance(x, dict) else "")
def test_each_alert_is_named_labelled_documented_and_tested(path: Path, rule: dict[str, Any]) -> None:
    name = rule["alert"]
    assert name.startswith("Homewatt"), name
    assert rule["labels"]["severity"] in SEVERITIES, name
    notes = rule["annotations"]
    assert notes["summary"] and notes["description"], name
    assert notes["runbook_url"] == f"docs/alerts.md#{name.lower()}"
    assert name.lower() in runbook_anchors(), f"{name}: no runbook entry in docs/alerts.md"
    assert name in fired_in_tests(), f"{name}: no promtool test shows it firing"


def test_alert_names_are_unique():
    names = [rule["alert"] for _, rule in alerts()]
    assert len(names) == len(set(names))
