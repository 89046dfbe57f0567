"""The supervisor on real processes: restarts with backoff, gives up on a crash loop, says why."""

from __future__ import annotations

import signal
import sys
import time

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from homewatt.procs import wait_until
from stack import status
from stack.supervisor import CRASH_LOOP, Service, Supervisor

pytestmark = pytest.mark.integration


def sleeper(name: str) -> Service:
    return Service(name=name, argv=[sys.executable, "-c", "import time; time.sleep(600)"], ready=lambda: True)


def test_a_killed_part_is_restarted_and_counted(tmp_path):
    events: list[str] = []
    with Supervisor(tmp_path, on_event=events.append) as sup:
        a, b = sleeper("a"), sleeper("b")
        sup.run(a)
        sup.run(b)
        sup.keep_running(interval=0.1)
        assert a.process is not None and b.process is not None
        first, other = a.process.pid, b.process.pid
        a.process.send_signal(signal.SIGKILL)
        wait_until(lambda: a.restarts == 1 and a.state == "running", 10, "a restarted")
        assert a.process.pid != first and a.last_exit == "killed by SIGKILL"
        assert b.process.pid == other and b.restarts == 0  # the others never noticed
        assert any("a stopped unexpectedly (killed by SIGKILL); restarting in 1 s" in e for e in events)
        # What `make status` and the stack's /metrics show.
        state = status.snapshot(sup, "up")
        assert state["parts"]["a"] == {
            **state["parts"]["a"],
            "state": "running",
            "restarts": 1,
            "pid": a.process.pid,
        }
        assert "killed by SIGKILL" in status.table(state)
        text = generate_latest(status_registry(sup)).decode()
        samples = {
            (s.name, s.labels["component"]): s.value
            for fam in text_string_to_metric_families(text)
            for s in fam.samples
            if "component" in s.labels
        }
        assert samples[("homewatt_component_restarts_total", "a")] == 1
        assert samples[("homewatt_component_restarts_total", "b")] == 0
        assert samples[("homewatt_component_up", "a")] == 1
        assert samples[("homewatt_component_last_exit_code", "a")] == -9
        assert ("homewatt_component_last_exit_code", "b") not in samples


def status_registry(sup: Supervisor) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(status.PartsCollector(sup))
    return registry


def test_a_crash_loop_is_given_up_on_and_the_rest_keeps_running(tmp_path):
    events: list[str] = []
    crash = Service(
        name="crash",
        argv=[sys.executable, "-c", "import sys; print('bad config'); sys.exit(3)"],
        ready=lambda: True,
    )
    with Supervisor(tmp_path, on_event=events.append) as sup:
        steady = sleeper("steady")
        sup.run(steady)
        sup.start(crash)
        sup.keep_running(interval=0.1)
        start = time.monotonic()
        wait_until(lambda: crash.state == "gave up", 60, "crash given up on")
        took = time.monotonic() - start
        assert crash.restarts == CRASH_LOOP - 1 and crash.last_exit == "exit status 3"
        assert took >= 1 + 2 + 4 + 8  # the backoff between the five deaths
        assert steady.state == "running" and steady.process is not None and steady.process.poll() is None
        (gave_up,) = [e for e in events if "given up" in e]
        assert "crash died 5 times" in gave_up and "bad config" in gave_up  # the log's end says why
        table = status.table(status.snapshot(sup, "up"))
        assert "gave up" in table and "exit status 3" in table and "its log ends: bad config" in table
        time.sleep(1)
        assert crash.restarts == CRASH_LOOP - 1  # and it stays given up


def test_a_scheduler_killed_mid_delivery_delivers_once_after_its_restart(tmp_path):
    """The partner is slow; the scheduler is SIGKILLed while it waits for the answer.  The
    payload is still in the outbox, the restarted scheduler sends it again with the same
    Idempotency-Key (the partner answers that key once), and the breakdown lands."""
    import os

    import requests

    from homewatt.config import Settings
    from stack.services import Stack
    from tests.conftest import stack_env, write_fleet

    env = stack_env(tmp_path / "data", write_fleet(tmp_path / "fleet.yaml", n=1))
    settings = Settings.from_env({**os.environ, **env})
    stack = Stack(settings)
    with Supervisor(stack.data / "logs") as sup:
        # History: a Prometheus of its own with nothing in it (every minute goes as null).
        sup.run(stack.prometheus(standalone=True))
        sup.run(stack.pushgateway())
        partner = stack.partner()
        sup.run(partner)
        token = {"Authorization": f"Bearer {partner_token(partner)}"}
        slow = {"mode": "slow", "delay": 25, "count": 1}
        requests.post(
            f"{settings.partner_url}/_faults", json=slow, headers=token, timeout=5
        ).raise_for_status()
        scheduler = stack.scheduler()
        sup.start(scheduler)
        sup.keep_running(interval=0.2)
        pending = settings.data / "outbox" / "pending"

        def sending() -> bool:
            health = requests.get(f"{settings.partner_url}/healthz", timeout=5).json()
            return health["requests"] >= 1 and any(pending.glob("*.json.gz"))

        wait_until(sending, 60, "the scheduler waiting on the slow partner")
        (entry,) = list(pending.glob("*.json.gz"))
        assert scheduler.process is not None
        killed = scheduler.process
        killed.send_signal(signal.SIGKILL)
        killed.wait()
        assert entry.exists()  # nothing lost with the process (its restart is 1 s away)
        wait_until(lambda: scheduler.restarts == 1, 10, "the scheduler restarted")

        def landed() -> bool:
            text = requests.get(f"{settings.pushgateway_url}/metrics", timeout=5).text
            return "elec_usage_share_ratio{" in text and not any(pending.glob("*.json.gz"))

        wait_until(landed, 120, "the breakdown pushed after the restart")
        health = requests.get(f"{settings.partner_url}/healthz", timeout=5).json()
        assert health["answered"] == 1 and health["requests"] >= 2  # sent twice, one key, one answer


def partner_token(partner: Service) -> str:
    from pathlib import Path

    if "PARTNER_TOKEN" in partner.env:
        return partner.env["PARTNER_TOKEN"]
    return Path(partner.env["PARTNER_TOKEN_FILE"]).read_text().strip()
