"""Shared fixtures: small fleets and a real Prometheus + Pushgateway + exporter stack."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from homewatt import promapi
from homewatt.config import Settings
from homewatt.fleet import DEFAULT_FLEET, Fleet, load_fleet
from homewatt.procs import free_port, port_in_use, wait_until
from stack.services import Stack
from stack.supervisor import Service, Supervisor


@pytest.fixture(autouse=True)
def _unit_tests_start_no_process(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """`make unit` runs the tests not marked `integration`: they must start no process.

    A test that does (Prometheus, promtool, Thanos, the exporter, a CLI) without the
    mark fails here at once, so the tiers stay honest as tests are added.
    """
    if request.node.get_closest_marker("integration") is None:

        def refuse(*args: object, **kwargs: object) -> None:
            raise AssertionError(f"a unit test started a process {args[:1]}: mark it integration")

        monkeypatch.setattr(subprocess.Popen, "__init__", refuse)


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


def free_port_base(n: int) -> int:
    """A port p such that p .. p + n - 1 are all free now (the Thanos components' ports).

    Taken below the kernel's ephemeral range: a port there is never handed out as the
    source port of an outgoing connection, which could take it between this check and
    the component's bind (it did, once, in a fresh-clone run).
    """
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    rng = np.random.default_rng()
    for _ in range(200):
        base = int(rng.integers(10000, low - n))
        if not any(port_in_use("127.0.0.1", base + i) for i in range(n)):
            return base
    raise RuntimeError(f"no {n} consecutive free ports")


def stack_env(data: Path, fleet_file: Path | None) -> dict[str, str]:
    prometheus = f"http://127.0.0.1:{free_port()}"
    env = {
        "PROMETHEUS_URL": prometheus,
        # History is the Prometheus itself unless a test runs Thanos (thanos_env).
        "HISTORY_URL": prometheus,
        "PUSHGATEWAY_URL": f"http://127.0.0.1:{free_port()}",
        "EXPORTER_LISTEN": f"127.0.0.1:{free_port()}",
        "HOMEWATT_STACK_LISTEN": f"127.0.0.1:{free_port()}",
        "PARTNER_URL": f"http://127.0.0.1:{free_port()}",
        "ALERTMANAGER_URL": f"http://127.0.0.1:{free_port()}",
        "HOMEWATT_RECEIVER_LISTEN": f"127.0.0.1:{free_port()}",
        "HOMEWATT_DATA": str(data),
    }
    if fleet_file:
        env["HOMEWATT_FLEET"] = str(fleet_file)
    return env


def thanos_env(env: dict[str, str]) -> dict[str, str]:
    """`env` with the Thanos tier on free ports: Query at HISTORY_URL, the rest above a free base."""
    return {
        **env,
        "HISTORY_URL": f"http://127.0.0.1:{free_port()}",
        "HOMEWATT_THANOS_PORT_BASE": str(free_port_base(9)),
    }


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


# How long after Prometheus stamps a scrape (its start) the exporter may render it.
# Measured on a 2-CPU machine with a 1 s scrape: idle at most 18 ms, with CPU hogs
# (load average 14) at most 197 ms (see the scrape-timing limit in docs/limits.md).
SCRAPE_DELAY = 0.5


def metered_second(
    ts: np.ndarray, joules: np.ndarray, counter_at: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """The second each sample was metered in, read off its energy counter.

    Prometheus stamps a sample when the scrape starts; the exporter answers later
    with the second it is then in, so a scrape stamped near a second's end may carry
    the next second.  The counter tells which: it grows every second (every home draws
    power), so exactly one second's model counter equals the stored value.  That second
    must be the stamp's own, or the next one for a stamp within SCRAPE_DELAY of its end.
    """
    sec = np.floor(ts).astype(np.int64)
    late = counter_at(sec + 1) == joules
    own = counter_at(sec) == joules
    assert np.all(own | late), f"counter off the model at {ts[~(own | late)]}"
    too_late = late & (ts - sec < 1 - SCRAPE_DELAY)
    assert not too_late.any(), f"answered over {SCRAPE_DELAY} s after the scrape started: {ts[too_late]}"
    return np.where(late, sec + 1, sec)


def assert_each_second_once(ts: np.ndarray, secs: np.ndarray) -> None:
    """One sample per metered second, none twice, none skipped, except next to a sample
    stamped within SCRAPE_DELAY of its second's end: whether the exporter answered it in
    that second or the next varies from scrape to scrape, so a second there may be
    metered twice, or skipped (the counter still carries its energy)."""
    step = np.diff(secs)
    near = ts - np.floor(ts) >= 1 - SCRAPE_DELAY
    excused = (near[:-1] | near[1:]) & ((step == 0) | (step == 2))
    assert np.all((step == 1) | excused), list(zip(ts.tolist(), secs.tolist(), strict=True))
