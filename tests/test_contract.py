"""The metric contract (homewatt/contract.py) is the only place a name or HELP text is written,
and the text files that cannot import it (prometheus.yml, the rule files) agree with it."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import yaml

from backfill import generate
from exporter.render import FleetRenderer
from homewatt import contract, promconfig
from homewatt.config import REPO
from homewatt.fleet import load_fleet

from .test_layers import LAYER

CONTRACT = REPO / "homewatt" / "contract.py"


def string_pieces(path: Path) -> list[tuple[int, str]]:
    """Every string constant of a file, f-string pieces included."""
    tree = ast.parse(path.read_text(), str(path))
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]


def production_files() -> list[Path]:
    return [p for package in LAYER for p in sorted((REPO / package).rglob("*.py")) if p != CONTRACT]


def test_each_metric_name_and_help_text_is_written_once():
    words = {m.name for m in contract.ALL} | {m.family for m in contract.ALL} | {m.help for m in contract.ALL}
    found = [
        f"{path.relative_to(REPO)}:{line}: {text!r}"
        for path in production_files()
        for line, text in string_pieces(path)
        if any(w in text for w in words)
    ]
    assert found == [], "use homewatt.contract instead of writing these again"


def test_exporter_and_backfill_write_the_same_help_and_type():
    """History and live are one series: their HELP/TYPE metadata must match too."""
    sensors = load_fleet().sensors[:1]
    live = FleetRenderer([s.id for s in sensors]).render(np.array([100]), np.array([5000]))
    texts, _, _ = generate.raw_chunk(sensors, 7200, 7260, np.zeros(1, np.int64), 7200, 7200)
    backfilled = texts[contract.RAW_STREAM].decode()
    for metric in (contract.POWER, contract.ENERGY):
        assert f"# HELP {metric.name} {metric.help}\n" in live
        assert f"# HELP {metric.family} {metric.help}\n" in backfilled  # OpenMetrics: the family name
        assert f"# TYPE {metric.family} {metric.kind}\n" in backfilled


def test_recording_rules_record_the_contracts_series():
    recorded = set()
    for path in sorted((REPO / "rules").glob("*.rules.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            recorded |= {r["record"] for r in group["rules"] if "record" in r}
    assert recorded == {m.name for m in contract.RECORDED}


def test_prometheus_config_pins_the_exporters_job_and_instance():
    doc = yaml.safe_load(promconfig.SOURCE.read_text())
    (job,) = [j for j in doc["scrape_configs"] if j["job_name"] == contract.EXPORTER_JOB]
    assert {"target_label": "instance", "replacement": contract.EXPORTER_INSTANCE} in job["relabel_configs"]
    assert doc["global"]["external_labels"][contract.STREAM_LABEL] == contract.RAW_STREAM
