"""Start a set of processes, wait until each is ready, stop them all cleanly.

`make up` and the integration tests both run the stack through this module, so
the tests exercise the very start-up and shutdown a user gets.  Each child gets
its own log file, dies with its parent (PR_SET_PDEATHSIG), and is stopped with
SIGTERM, then SIGKILL after a grace period, in reverse start order.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from homewatt.procs import WaitTimeout, die_with_parent, port_in_use, wait_until

log = logging.getLogger(__name__)


@dataclass
class Service:
    """One process of the stack: how to run it and how to know it is ready."""

    name: str
    argv: Sequence[str]
    ready: Callable[[], bool]
    listen: tuple[str, int] | None = None
    env: dict[str, str] = field(default_factory=dict)
    ready_timeout: float = 60.0
    process: subprocess.Popen[bytes] | None = None


class StartError(RuntimeError):
    pass


class Supervisor:
    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.services: list[Service] = []

    def start(self, service: Service) -> None:
        if service.listen and port_in_use(*service.listen):
            host, port = service.listen
            raise StartError(
                f"{service.name}: {host}:{port} is already in use (another `make up`?). "
                "Stop it, or choose other ports through the environment (see README)."
            )
        self.log_dir.mkdir(parents=True, exist_ok=True)
        logfile = open(self.log_dir / f"{service.name}.log", "ab")  # noqa: SIM115 - child keeps it
        service.process = subprocess.Popen(
            list(service.argv),
            stdin=subprocess.DEVNULL,
            stdout=logfile,
            stderr=subprocess.STDOUT,
            env={**os.environ, **service.env},
            start_new_session=True,  # the supervisor alone decides when children stop
            preexec_fn=die_with_parent,  # runs in the child between fork and exec
        )
        logfile.close()
        self.services.append(service)
        log.info("started %s (pid %d)", service.name, service.process.pid)

    def wait_ready(self, service: Service) -> None:
        process = service.process
        if process is None:
            raise StartError(f"{service.name} was never started")

        def ready() -> bool:
            if process.poll() is not None:
                raise StartError(f"{service.name} exited with {process.returncode}:\n{self.tail(service)}")
            return service.ready()

        try:
            wait_until(ready, service.ready_timeout, f"{service.name} ready", interval=0.2)
        except WaitTimeout as exc:
            raise StartError(f"{exc}:\n{self.tail(service)}") from None

    def run(self, service: Service) -> None:
        self.start(service)
        self.wait_ready(service)

    def tail(self, service: Service, lines: int = 20) -> str:
        path = self.log_dir / f"{service.name}.log"
        try:
            text = path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return "(no log)"
        return "\n".join(f"  {service.name}| {line}" for line in text) + f"\n  (full log: {path})"

    def dead(self) -> list[Service]:
        return [s for s in self.services if s.process is not None and s.process.poll() is not None]

    def stop_one(self, service: Service, grace: float = 10.0) -> None:
        """Stop one service (SIGTERM, then SIGKILL after `grace` s) and forget it."""
        p = service.process
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                log.warning("%s ignored SIGTERM, killing it", service.name)  # a halted compactor does
                p.kill()
                p.wait()
        self.services.remove(service)

    def stop(self, grace: float = 10.0) -> None:
        for service in reversed(self.services):
            p = service.process
            if p is None or p.poll() is not None:
                continue
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for service in reversed(self.services):
            p = service.process
            if p is None:
                continue
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s ignored SIGTERM, killing it", service.name)
                p.kill()
                p.wait()
        self.services.clear()

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
