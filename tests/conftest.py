"""Shared fixtures: small fleets and a real Prometheus + Pushgateway + exporter stack."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from homewatt import promapi
from homewatt.config import Settings
from homewatt.fleet import DEFAULT_FLEET, Fleet, load_fleet
from homewatt.procs import free_port, wait_until
from stack.services import Stack
from stack.supervisor import Service, Supervisor


def today_utc() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def write_fleet(
    path: Path, n: int = 2, index_date: dt.date | None = None, ids: list[str] | None = None
) -> Path:
    """A copy of some default homes (the first `n`, or `ids`), anchored near today (a cheap ledger)."""
    doc = yaml.safe_load(DEFAULT_FLEET.read_text())
    doc["sensors"] = [s for s in doc["sensors"] if s["id"] in ids] if ids else doc["sensors"][:n]
    for s in doc["sensors"]:
        s["index_date"] = (index_date or today_utc()).isoformat()
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def fleet() -> Fleet:
    return load_fleet()


def query_until(url: str, expr: str, count: int, timeout: float) -> list[dict[str, Any]]:
    """The instant result of `expr` once it has at least `count` series (fails after `timeout` s)."""

    def enough() -> list[dict[str, Any]] | None:
        got = promapi.query(url, expr)
        return got if len(got) >= count else None

    return wait_until(enough, timeout, f"{expr!r} with {count} series at {url}", 1.0, (promapi.PromError,))


def stack_env(data: Path, fleet_file: Path | None) -> dict[str, str]:
    prometheus = f"http://127.0.0.1:{free_port()}"
    env = {
        "PROMETHEUS_URL": prometheus,
        # History is the Prometheus itself unless a test runs Thanos (thanos_env).
        "HISTORY_URL": prometheus,
        "PUSHGATEWAY_URL": f"http://127.0.0.1:{free_port()}",
        "EXPORTER_LISTEN": f"127.0.0.1:{free_port()}",
        "PARTNER_URL": f"http://127.0.0.1:{free_port()}",
        "HOMEWATT_DATA": str(data),
    }
    if fleet_file:
        env["HOMEWATT_FLEET"] = str(fleet_file)
    return env


def serve_blocks(blocks: Path, data: Path, fleet_file: Path) -> tuple[Settings, Service]:
    """A Prometheus on free ports whose TSDB is a copy of a directory of blocks (e.g. one
    Thanos block stream): what it answers is what those blocks hold."""
    shutil.copytree(blocks, data / "prometheus", ignore=shutil.ignore_patterns("thanos.shipper.json"))
    settings = Settings.from_env({**os.environ, **stack_env(data, fleet_file)})
    return settings, Stack(settings).prometheus(standalone=True)


class RunningStack:
    def __init__(self, settings: Settings, fleet: Fleet):
        self.settings = settings
        self.fleet = fleet
        self.prom = settings.prometheus_url

    def wait_for(self, expr: str, count: int, timeout: float) -> list[dict]:
        return query_until(self.prom, expr, count, timeout)


@pytest.fixture(scope="session")
def live_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """The real native stack (same Stack/Supervisor as `make up`) on free ports."""
    root = tmp_path_factory.mktemp("stack")
    fleet_file = write_fleet(root / "fleet.yaml", n=3)
    settings = Settings.from_env({**os.environ, **stack_env(root / "data", fleet_file)})
    stack = Stack(settings)
    with Supervisor(stack.data / "logs") as sup:
        for service in stack.services():
            sup.run(service)
        yield RunningStack(settings, load_fleet(fleet_file))


def metered_second(
    ts: np.ndarray, values: np.ndarray, model: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """The second each sample was metered in: the scrape's own second.

    Prometheus stamps a sample when the scrape starts; the exporter answers a few
    ms later with the value of the second it is then in.  Only a scrape starting
    within 50 ms of a second's end may have been answered in the next second.
    """
    sec = np.floor(ts).astype(np.int64)
    late = (ts - sec > 0.95) & (model(sec) != values)
    return np.where(late, sec + 1, sec)
