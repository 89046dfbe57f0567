"""What the running stack tells about itself: a state file for `make status`, /metrics for Prometheus.

The runner (`python -m stack`) rewrites `data/run/stack.json` every second: its
own pid, and each part's state, pid, start time, restart count and last exit.
`make status` reads it (and checks that the runner is alive); `make down` finds
the pid to signal there.  The same facts are served on the runner's /metrics
(HOMEWATT_STACK_LISTEN, 127.0.0.1:9107), which Prometheus scrapes, so that an
alert can fire on a crash loop.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from homewatt.contract import COMPONENT, COMPONENT_LAST_EXIT, COMPONENT_RESTARTS, COMPONENT_UP
from homewatt.httpserver import Handler, Server
from stack.bucket import BucketCollector
from stack.supervisor import Supervisor


def state_path(data: Path) -> Path:
    return data / "run" / "stack.json"


def snapshot(supervisor: Supervisor, phase: str, summary: str = "") -> dict[str, Any]:
    now, mono = time.time(), time.monotonic()
    return {
        "runner_pid": os.getpid(),
        "phase": phase,  # starting | up | stopping
        "summary": summary,
        "written": now,
        "parts": {
            s.name: {
                "state": s.state,
                "pid": s.process.pid if s.process is not None and s.state == "running" else None,
                "started": now - (mono - s.started_at) if s.started_at else None,
                "restarts": s.restarts,
                "last_exit": s.last_exit,
                "last_words": s.last_words,
            }
            for s in list(supervisor.services)
        },
    }


def write(data: Path, state: dict[str, Any]) -> None:
    path = state_path(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=1))
    tmp.replace(path)


def alive(pid: int) -> bool:
    """Whether `pid` runs.  A zombie does not: a SIGKILLed runner whose parent (make up-bg's,
    long gone) left it to an init that does not reap stays in the table until reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def read(data: Path) -> dict[str, Any] | None:
    """The last state written by a runner that is still alive; None when no stack runs."""
    try:
        state: dict[str, Any] = json.loads(state_path(data).read_text())
    except (OSError, ValueError):
        return None
    return state if alive(int(state.get("runner_pid", 0))) else None


def table(state: dict[str, Any], now: float | None = None) -> str:
    now = time.time() if now is None else now
    rows = [f"{'part':<24} {'state':<9} {'pid':>7} {'uptime':>9} {'restarts':>8}  last exit"]
    for name, p in state["parts"].items():
        up = "" if p["started"] is None or p["state"] != "running" else _duration(now - p["started"])
        pid = "" if p["pid"] is None else str(p["pid"])
        rows.append(f"{name:<24} {p['state']:<9} {pid:>7} {up:>9} {p['restarts']:>8}  {p['last_exit']}")
        if p["state"] != "running" and p.get("last_words"):
            rows.append(f"{'':<24} its log ends: {p['last_words'][:160]}")
    return "\n".join(rows)


def _duration(seconds: float) -> str:
    s = int(seconds)
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


class PartsCollector:
    """Per part: restarts so far, whether it runs now (0 in backoff or given up), how it last ended."""

    def __init__(self, supervisor: Supervisor):
        self.supervisor = supervisor

    def collect(self) -> Iterator[Metric]:
        restarts = CounterMetricFamily(COMPONENT_RESTARTS.family, COMPONENT_RESTARTS.help, labels=[COMPONENT])
        up = GaugeMetricFamily(COMPONENT_UP.name, COMPONENT_UP.help, labels=[COMPONENT])
        last = GaugeMetricFamily(COMPONENT_LAST_EXIT.name, COMPONENT_LAST_EXIT.help, labels=[COMPONENT])
        for s in list(self.supervisor.services):
            restarts.add_metric([s.name], s.restarts)
            up.add_metric([s.name], 1.0 if s.state == "running" else 0.0)
            if s.last_exit_code is not None:
                last.add_metric([s.name], s.last_exit_code)
        yield restarts
        yield up
        yield last


def serve(supervisor: Supervisor, host: str, port: int, bucket: Path | None = None) -> Server:
    """The runner's /metrics: each part's state, and the bucket's size when there is one."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PartsCollector(supervisor))
    if bucket is not None:
        registry.register(BucketCollector(bucket))

    class MetricsHandler(Handler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path.split("?")[0] == "/metrics":
                self.reply(200, CONTENT_TYPE_LATEST, generate_latest(registry))
            else:
                self.send_error(404)

    return Server((host, port), MetricsHandler)
