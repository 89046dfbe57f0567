"""prometheus/prometheus.yml, pointed at the addresses of a given run.

The committed file is the native default.  `make up` with other ports and the
integration tests (free ports, temporary dirs) need the same configuration with
other targets; rewriting it here, instead of keeping edited copies, means every
run executes the scrape jobs and rules that the repository holds.

The Docker stack's config, prometheus/prometheus.compose.yml, is generated from
the same file (`python -m homewatt.promconfig`; a test checks it is current):
container hostnames as targets, and only the rule files Prometheus evaluates
there.  The 15m group runs in the Thanos Ruler instead (RULER_RULES), so its
series land in the quarter block stream (homewatt/streams.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from homewatt.config import REPO
from homewatt.shards import keep_own
from homewatt.shards import labels as shard_labels

SOURCE = REPO / "prometheus" / "prometheus.yml"
COMPOSE = REPO / "prometheus" / "prometheus.compose.yml"
TARGET_JOBS = {
    "homewatt-exporter": "exporter",
    "pushgateway": "pushgateway",
    "prometheus": "prometheus",
    "homewatt-stack": "stack",
    "alertmanager": "alertmanager",
    "thanos-sidecar": "thanos-sidecar",
    "thanos-store": "thanos-store",
    "thanos-query": "thanos-query",
    "thanos-rule": "thanos-rule",
    "thanos-compact": "thanos-compact",
}
# The jobs whose series carry a sensor: each shard keeps its share of them.  Every other
# shard than 0 scrapes these and itself only.
SENSOR_JOBS = {"homewatt-exporter", "pushgateway"}
SHARD_JOBS = SENSOR_JOBS | {"prometheus"}
# Jobs of the native stack only: in Docker, compose restarts the parts and there is no runner.
NATIVE_ONLY = {"homewatt-stack"}
# docker-compose.yml's service names and ports.
COMPOSE_ADDRESSES: dict[str, str | list[str]] = {
    "exporter": "exporter:9105",
    "pushgateway": "pushgateway:9091",
    "prometheus": "localhost:9090",
    "alertmanager": "alertmanager:9093",
    "thanos-sidecar": "thanos-sidecar:10902",
    "thanos-store": "thanos-store:10902",
    "thanos-query": "thanos-query:10902",
    "thanos-rule": "thanos-ruler:10902",
    "thanos-compact": ["thanos-compact-raw:10902", "thanos-compact-quarter:10902"],
}
# Which rule files run where when Thanos runs (`make up`, the Docker stack; paths
# relative to prometheus/): Prometheus the 1m group, the Ruler the rest.
# The alerts that need weeks of history run in the Ruler too (Prometheus keeps three days).
PROMETHEUS_RULES = [
    "../rules/homewatt-1m.rules.yml",
    "../rules/homewatt-alerts.rules.yml",
    "../rules/thanos-alerts.rules.yml",
]
RULER_RULES = ["../rules/homewatt-15m.rules.yml", "../rules/homewatt-usage-alerts.rules.yml"]


Addresses = Mapping[str, "str | list[str]"]


def _targets(address: str | list[str]) -> list[str]:
    return [address] if isinstance(address, str) else list(address)


def render(
    addresses: Addresses,
    source: Path = SOURCE,
    rule_files: list[str] | None = None,
    shard: int = 0,
    shards: int = 1,
) -> dict[str, Any]:
    """The config with each job's targets replaced by `addresses[role]` (host:port, or a
    list of them), and the Alertmanager's by `addresses["alertmanager"]`.

    Rule-file globs become absolute, so the result can be written anywhere;
    `rule_files` (relative to prometheus/) replaces the file's own list.  With several
    `shards`, shard `shard` keeps its share of the sensor jobs' series and its
    external label (homewatt/shards.py); the parts' own metrics are shard 0's to scrape.
    """
    doc = yaml.safe_load(source.read_text())
    rules = doc.get("rule_files", []) if rule_files is None else rule_files
    doc["rule_files"] = [str((source.parent / p).resolve()) for p in rules]
    for job in doc["scrape_configs"]:
        role = TARGET_JOBS.get(job["job_name"])
        if role is None or role not in addresses:
            continue
        job["static_configs"] = [{"targets": _targets(addresses[role])}]
    if "alertmanager" in addresses:
        for am in doc["alerting"]["alertmanagers"]:
            am["static_configs"] = [{"targets": _targets(addresses["alertmanager"])}]
    if shards > 1:
        doc["global"]["external_labels"].update(shard_labels(shard, shards))
        if shard > 0:
            doc["scrape_configs"] = [j for j in doc["scrape_configs"] if j["job_name"] in SHARD_JOBS]
        for job in doc["scrape_configs"]:
            if job["job_name"] in SENSOR_JOBS:
                job["metric_relabel_configs"] = [
                    *job.get("metric_relabel_configs", []),
                    *keep_own(shard, shards),
                ]
    return doc


def write(
    path: Path,
    addresses: Addresses,
    source: Path = SOURCE,
    rule_files: list[str] | None = None,
    shard: int = 0,
    shards: int = 1,
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    header = f"# Generated from {source} by homewatt.promconfig: edit that file, not this one.\n"
    doc = render(addresses, source, rule_files, shard, shards)
    path.write_text(header + yaml.safe_dump(doc, sort_keys=False))
    return path


def compose_config() -> str:
    """prometheus/prometheus.compose.yml's text.  Compose mounts prometheus/ and rules/
    side by side, so the relative rule paths hold in the container and here alike."""
    doc = render(COMPOSE_ADDRESSES)
    doc["scrape_configs"] = [j for j in doc["scrape_configs"] if j["job_name"] not in NATIVE_ONLY]
    doc["rule_files"] = list(PROMETHEUS_RULES)  # relative: they must hold in the container
    header = (
        "# Generated from prometheus.yml by `python -m homewatt.promconfig`: edit that file, not this one.\n"
        "# The Docker stack's Prometheus: container targets; the 15m rules run in the Thanos Ruler.\n"
    )
    return header + yaml.safe_dump(doc, sort_keys=False)


if __name__ == "__main__":
    COMPOSE.write_text(compose_config())
    print(f"wrote {COMPOSE}")
