"""prometheus/prometheus.yml, pointed at the addresses of a given run.

The committed file is the native default.  `make up` with other ports and the
integration tests (free ports, temporary dirs) need the same configuration with
other targets; rewriting it here, instead of keeping edited copies, means every
run executes the scrape jobs and rules that the repository holds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from homewatt.config import REPO

SOURCE = REPO / "prometheus" / "prometheus.yml"
TARGET_JOBS = {"homewatt-exporter": "exporter", "pushgateway": "pushgateway", "prometheus": "prometheus"}


def render(addresses: dict[str, str], source: Path = SOURCE) -> dict[str, Any]:
    """The config with each job's target replaced by `addresses[role]` (host:port).

    Rule-file globs become absolute, so the result can be written anywhere.
    """
    doc = yaml.safe_load(source.read_text())
    doc["rule_files"] = [str((source.parent / p).resolve()) for p in doc.get("rule_files", [])]
    for job in doc["scrape_configs"]:
        role = TARGET_JOBS.get(job["job_name"])
        if role is None or role not in addresses:
            continue
        job["static_configs"] = [{"targets": [addresses[role]]}]
    return doc


def write(path: Path, addresses: dict[str, str], source: Path = SOURCE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    header = f"# Generated from {source} by homewatt.promconfig: edit that file, not this one.\n"
    path.write_text(header + yaml.safe_dump(render(addresses, source), sort_keys=False))
    return path
