"""`make up`'s runner: ready within 30 s, URLs printed, Ctrl-C leaves nothing behind, data reused."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests
import yaml

from homewatt import loadmodel, promapi
from homewatt.config import REPO, hostport
from homewatt.fleet import Sensor, load_fleet
from homewatt.meter import Ledger, counter
from homewatt.procs import WaitTimeout, free_port, port_in_use, wait_until

from .conftest import (
    assert_each_second_once,
    metered_second,
    query_until,
    stack_env,
    thanos_env,
    write_fleet,
)

pytestmark = pytest.mark.integration


def processes_mentioning(text: str) -> list[str]:
    """Processes whose command line or environment names `text` (the run's data dir)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            env = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if text in cmd or text in env:
            found.append(f"{pid}: {cmd}")
    return found


def no_process_left(text: str, grace: float = 10.0) -> list[str]:
    """Processes still naming `text` after a grace period (multiprocessing's resource
    tracker leaves a moment after its parent)."""
    with contextlib.suppress(WaitTimeout):
        wait_until(lambda: not processes_mentioning(text), grace, f"no process naming {text}", 0.2)
    return processes_mentioning(text)


def start_up(
    env: dict[str, str], via: list[str] | None = None
) -> tuple[subprocess.Popen[str], list[str], float]:
    """Start the runner like a terminal would (through `via`, a parent such as make, if given)
    and read its output until it says it is up."""
    start = time.monotonic()
    proc = subprocess.Popen(
        [*(via or []), sys.executable, "-m", "stack"],
        cwd=REPO,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, as a shell job gets
    )
    assert proc.stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    stdout = proc.stdout

    def read_lines() -> None:
        for line in stdout:
            lines.put(line.rstrip())

    threading.Thread(target=read_lines, daemon=True).start()
    seen: list[str] = []
    while time.monotonic() - start < 240:  # a first start backfills, then waits for Prometheus
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            if proc.poll() is not None:
                break
            continue
        seen.append(line)
        if line.startswith("Ctrl-C stops everything"):
            return proc, seen, time.monotonic() - start
    proc.kill()
    raise AssertionError("runner did not come up:\n" + "\n".join(seen))


def ctrl_c(proc: subprocess.Popen[str]) -> int:
    os.killpg(proc.pid, signal.SIGINT)  # what the terminal sends to the foreground group
    return proc.wait(timeout=40)


def still_listening(env: dict[str, str], *more: str) -> list[str]:
    """Which of the stack's addresses (and `more` URLs) something still listens on."""
    urls = [
        *more,
        env["PROMETHEUS_URL"],
        env["PUSHGATEWAY_URL"],
        env["PARTNER_URL"],
        env["HISTORY_URL"],
        f"http://{env['EXPORTER_LISTEN']}",
        f"http://{env['HOMEWATT_STACK_LISTEN']}",
        env["ALERTMANAGER_URL"],
        f"http://{env['HOMEWATT_RECEIVER_LISTEN']}",
    ]
    return [url for url in urls if port_in_use(*hostport(url))]


def live_seconds_around(prom: str, sensor: Sensor, t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stamp, metered second and counter of every sample within 15 s of t, backfilled or live."""
    sel = f'{{sensor="{sensor.id}"}}'
    extra = {"dedup": "true", "partial_response": "false"}
    power = promapi.query(prom, f"elec_power_watts{sel}[30s]", at=t + 15, extra=extra)[0]["values"]
    energy = promapi.query(prom, f"elec_energy_joules_total{sel}[30s]", at=t + 15, extra=extra)[0]["values"]
    ts = np.array([float(x) for x, _ in energy])
    joules = np.array([float(v) for _, v in energy])
    ledger = Ledger([sensor])
    secs = metered_second(ts, joules, lambda x: counter(ledger, x)[0])
    assert [float(x) for x, _ in power] == list(ts)
    assert [float(v) for _, v in power] == list(loadmodel.power(sensor, secs).astype(float))
    return ts, secs, joules


def test_up_backfills_once_shows_live_power_then_ctrl_c_stops_everything(tmp_path):
    data = tmp_path / "data"
    fleet_file = write_fleet(tmp_path / "fleet.yaml", n=2)
    # And a simulated Shelly on a broker of its own: make up starts mosquitto and the simulator.
    broker = f"mqtt://127.0.0.1:{free_port()}"
    doc = yaml.safe_load(fleet_file.read_text())
    device = {"format": "shelly", "broker": broker, "topic": "shellyplus1pm-up", "simulated": True}
    doc["sensors"].append({"id": "m-up", "home": "a Shelly", "device": device})
    fleet_file.write_text(yaml.safe_dump(doc, sort_keys=False))
    env = {
        **thanos_env(stack_env(data, fleet_file)),
        "HOMEWATT_RAW_DAYS": "0.05",
        "HOMEWATT_HISTORY_DAYS": "2",
    }
    proc, lines, took = start_up(env)
    try:
        text = "\n".join(lines)
        # Live within 30 s, then the backfill and Prometheus loading it (once a minute).
        live_after = float(
            text.split("live data for all 2 modelled sensors in Prometheus after ")[1].split(" s")[0]
        )
        assert live_after < 30
        written = re.search(r"backfill: 2 sensors, (\d+) chunks written, 0 already there \(skipped\)", text)
        assert written and int(written[1]) >= 2, text
        prom, history = env["PROMETHEUS_URL"], env["HISTORY_URL"]
        state = data / "backfill" / ".backfill" / "state.json"
        live_start = json.loads(state.read_text())["identity"]["live_start"]
        assert f"Thanos Query UI (3 years):     {history}/graph" in text
        # The join, read through Thanos Query (the backfill from the bucket, live data from the
        # sidecar): one sample per metered second across it (see assert_each_second_once for
        # the one exception), and the counter steps by exactly the energy in between.
        assert f"Device m-up: shelly at {broker}, topic shellyplus1pm-up (simulated)" in text
        for s in load_fleet(fleet_file).modelled:
            ts, secs, joules = live_seconds_around(history, s, live_start)
            assert secs[0] < live_start - 10 and secs[-1] > live_start + 10
            assert np.all(secs[ts < live_start] == ts[ts < live_start]), "backfill: whole seconds"
            # The backfill ends just before the second the first scrape metered: no gap there.
            assert live_start - 1 in secs and live_start in secs
            assert_each_second_once(ts, secs)
            steps = [
                loadmodel.power(s, np.arange(a, b)).sum() for a, b in zip(secs[:-1], secs[1:], strict=True)
            ]
            assert list(np.diff(joules)) == [float(x) for x in steps]
        assert f"{prom}/graph?g0.expr=elec_power_watts" in text
        assert f"http://{env['EXPORTER_LISTEN']}/metrics" in text
        fresh = query_until(prom, "time() - timestamp(elec_power_watts) <= 2", 3, 30)
        assert {r["metric"]["sensor"] for r in fresh} == {"s-001", "s-002", "m-up"}
        # No history is invented for the device: nothing of it before make up started.
        assert (
            promapi.query(
                history, 'count_over_time(elec_energy_joules_total{sensor="m-up"}[1d])', at=live_start - 60
            )
            == []
        )
        # Without a Grafana binary, make up says so (and where the dashboards are).
        if not (shutil.which("grafana-server") or shutil.which("grafana")):
            assert "Grafana: no grafana-server or grafana binary on PATH" in text
        # The scheduler ran the last midnight at once: a breakdown per sensor shows up.
        assert f"{env['PARTNER_URL']}/v1/breakdowns" in text
        # (The history here is shorter than a window: every minute goes as null, and still lands.)
        shares = query_until(prom, "sum by (sensor) (elec_usage_share_ratio)", 3, 90)
        assert {r["metric"]["sensor"] for r in shares} == {"s-001", "s-002", "m-up"}
        assert all(abs(float(r["value"][1]) - 1) <= 1e-3 for r in shares)
        # Alerting: Prometheus sends to Alertmanager, scrapes every Thanos component, and a
        # healthy stack fires nothing.
        assert f"{env['ALERTMANAGER_URL']}/#/alerts" in text
        assert f"http://{env['HOMEWATT_RECEIVER_LISTEN']}/" in text
        query_until(prom, "prometheus_notifications_alertmanagers_discovered == 1", 1, 30)
        thanos_up = query_until(prom, 'up{job=~"thanos-.*"} == 1', 6, 60)
        assert sorted(r["metric"]["job"] for r in thanos_up) == [
            "thanos-compact",
            "thanos-compact",
            "thanos-query",
            "thanos-rule",
            "thanos-sidecar",
            "thanos-store",
        ]
        assert promapi.query(prom, 'ALERTS{alertstate="firing"}') == []
    finally:
        rc = ctrl_c(proc)
    assert rc == 0
    assert still_listening(env, broker) == []
    base = int(env["HOMEWATT_THANOS_PORT_BASE"])
    assert [p for p in range(base, base + 9) if port_in_use("127.0.0.1", p)] == []
    assert no_process_left(str(data)) == []
    stopped_at = time.time()
    uploaded = sorted(p.name for p in (data / "bucket").iterdir())

    # A second start reuses the TSDB and does not backfill again.
    proc, lines, took = start_up(env)
    try:
        assert f"backfill: 2 sensors, 0 chunks written, {written[1]} already there (skipped)" in "\n".join(
            lines
        )
        assert took < 60
        assert sorted(p.name for p in (data / "bucket").iterdir()) == uploaded, "nothing uploaded twice"
        before = promapi.query(env["PROMETHEUS_URL"], "count_over_time(elec_power_watts[2m])", at=stopped_at)
        assert len(before) == 3
        assert all(float(r["value"][1]) >= 3 for r in before)
    finally:
        assert ctrl_c(proc) == 0
    assert no_process_left(str(data)) == []

    # `make up` SIGKILLed (here a parent standing in for make): the runner stops everything.
    make = [sys.executable, "-c", "import subprocess, sys; subprocess.run(sys.argv[1:])"]
    proc, lines, took = start_up(env, via=make)
    try:
        proc.kill()
        proc.wait()
        assert no_process_left(str(data), grace=40) == []
        assert still_listening(env, broker) == []
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def test_up_refuses_a_busy_port(tmp_path):
    env = stack_env(tmp_path / "data", write_fleet(tmp_path / "fleet.yaml", n=1))
    with socket.socket() as busy:
        host, port = hostport(env["PUSHGATEWAY_URL"])
        busy.bind((host, port))
        busy.listen()
        out = subprocess.run(
            [sys.executable, "-m", "stack"],
            cwd=REPO,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert out.returncode == 1
    assert f"{host}:{port} is already in use" in out.stderr
    assert no_process_left(str(tmp_path / "data")) == []


def stack_cmd(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stack", *args],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_up_bg_restarts_killed_parts_without_losing_data_and_down_leaves_nothing(tmp_path):
    data = tmp_path / "data"
    env = {
        **thanos_env(stack_env(data, write_fleet(tmp_path / "fleet.yaml", n=1))),
        "HOMEWATT_RAW_DAYS": "0.05",
        "HOMEWATT_HISTORY_DAYS": "2",
    }
    prom, pushgateway = env["PROMETHEUS_URL"], env["PUSHGATEWAY_URL"]
    started = stack_cmd(env, "up", "--background", timeout=400)
    assert started.returncode == 0, started.stdout + started.stderr
    assert "homewatt is up: 1 sensors" in started.stdout and "`make down`" in started.stdout
    try:
        shown = stack_cmd(env, "status")
        assert shown.returncode == 0 and "exporter" in shown.stdout and "running" in shown.stdout

        def part(name: str) -> dict:
            state = json.loads((data / "run" / "stack.json").read_text())
            return state["parts"][name]

        # The exporter: back within seconds; the counter goes on exactly, with no reset.
        (sensor,) = load_fleet(tmp_path / "fleet.yaml").sensors
        pid = part("exporter")["pid"]
        killed_at = time.time()
        os.kill(pid, signal.SIGKILL)
        wait_until(
            lambda: part("exporter")["restarts"] == 1 and part("exporter")["state"] == "running",
            20,
            "exporter back",
        )
        query_until(prom, "time() - timestamp(elec_power_watts) <= 2", 1, 30)
        back_after = time.time() - killed_at
        time.sleep(3)
        energy = promapi.query(prom, f'elec_energy_joules_total{{sensor="{sensor.id}"}}[60s]')[0]["values"]
        ts = np.array([float(t) for t, _ in energy])
        joules = np.array([float(v) for _, v in energy])
        ledger = Ledger([sensor])
        secs = metered_second(ts, joules, lambda x: counter(ledger, x)[0])
        gap = int(np.argmax(np.diff(ts)))
        assert ts[gap] < killed_at < ts[gap + 1] and ts[gap + 1] - ts[gap] <= back_after + 2
        steps = [
            loadmodel.power(sensor, np.arange(a, b)).sum() for a, b in zip(secs[:-1], secs[1:], strict=True)
        ]
        assert list(np.diff(joules)) == [float(x) for x in steps]  # across the gap too: no reset, no jump

        # Prometheus: replays its WAL; what it scraped before the kill is still there.
        before = time.time()
        count_expr = f'count_over_time(elec_power_watts{{sensor="{sensor.id}"}}[30s])'
        had = float(promapi.query(prom, count_expr, at=before)[0]["value"][1])
        os.kill(part("prometheus")["pid"], signal.SIGKILL)
        wait_until(lambda: part("prometheus")["restarts"] == 1, 20, "prometheus restarted")
        wait_until(
            lambda: promapi.query(prom, count_expr, at=before),
            90,
            "prometheus back",
            errors=(promapi.PromError,),
        )
        assert float(promapi.query(prom, count_expr, at=before)[0]["value"][1]) == had >= 25

        # The Pushgateway: the breakdown is back from its persistence file (written every 30 s).
        shares = query_until(prom, "elec_usage_share_ratio", 1, 90)
        pushed = float(promapi.query(prom, "max(partner_job_last_success_timestamp_seconds)")[0]["value"][1])
        wait_until(lambda: time.time() > pushed + 35, 60, "the Pushgateway's next persistence write")
        os.kill(part("pushgateway")["pid"], signal.SIGKILL)
        wait_until(lambda: part("pushgateway")["restarts"] == 1, 20, "pushgateway restarted")

        def breakdown_back() -> bool:
            with contextlib.suppress(requests.RequestException):
                return "elec_usage_share_ratio{" in requests.get(f"{pushgateway}/metrics", timeout=5).text
            return False

        wait_until(breakdown_back, 30, "the breakdown served again")
        assert len(shares) >= 1

        # The restarts are visible to Prometheus, for the crash-loop alert.
        restarts = query_until(prom, "homewatt_component_restarts_total > 0", 3, 60)
        assert {r["metric"]["component"]: float(r["value"][1]) for r in restarts} == {
            "exporter": 1.0,
            "prometheus": 1.0,
            "pushgateway": 1.0,
        }
        shown = stack_cmd(env, "status")
        assert "killed by SIGKILL" in shown.stdout
        # The supervisor itself SIGKILLed: its children die with it, nothing keeps a port.
        os.kill(json.loads((data / "run" / "stack.json").read_text())["runner_pid"], signal.SIGKILL)
        assert no_process_left(str(data)) == []
        assert stack_cmd(env, "status").returncode == 3  # no stack runs: the state file's runner is gone
        assert still_listening(env) == []
        # It starts again on the same data (no second backfill), and `down` stops it.
        again = stack_cmd(env, "up", "--background", timeout=400)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "running" in stack_cmd(env, "status").stdout
    finally:
        stopped = stack_cmd(env, "down")
    assert stopped.returncode == 0 and "homewatt stack stopped" in stopped.stdout, stopped.stderr
    assert stack_cmd(env, "status").returncode == 3
    assert still_listening(env) == []
    assert no_process_left(str(data)) == []
