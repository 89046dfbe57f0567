"""Start a set of processes, wait until each is ready, restart what dies, stop them all cleanly.

`make up` and the integration tests both run the stack through this module, so
the tests exercise the very start-up and shutdown a user gets.  Each child gets
its own log file, dies with its parent (PR_SET_PDEATHSIG), and is stopped with
SIGTERM, then SIGKILL after a grace period, in reverse start order.

Once `keep_running()` is called (make up does, after start-up), a child that
dies is started again after a backoff of 1 s, doubling up to 30 s; a child that
ran for `STEADY_S` before dying starts again from 1 s.  One that dies
`CRASH_LOOP` times within `CRASH_WINDOW_S` is given up on: it is reported, and
the others keep running.  Why not supervisord: make up starts the parts in an
order with readiness checks and a backfill between them, and its children must
die with it even when it is SIGKILLed, which supervisord's children do not
(docs/operations.md).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from collections import deque
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
    # What the supervisor knows of its life: `make status` and the stack's /metrics show it.
    state: str = "stopped"  # running | backoff | gave up | stopped
    started_at: float = 0.0
    restarts: int = 0
    last_exit: str = ""
    last_exit_code: int | None = None  # negative: killed by that signal
    last_words: str = ""  # the last line of its log when it died: often why
    next_start: float = 0.0
    deaths: deque[float] = field(default_factory=deque)


BACKOFF_S = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
STEADY_S = 60.0  # a run this long resets the backoff
CRASH_LOOP = 5  # deaths within CRASH_WINDOW_S that make a crash loop
CRASH_WINDOW_S = 300.0


def exit_reason(returncode: int) -> str:
    if returncode < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-returncode).name}"
        return f"killed by signal {-returncode}"
    return f"exit status {returncode}"


class StartError(RuntimeError):
    pass


def last_lines(path: Path, lines: int) -> list[str]:
    """The end of a log file; none if it cannot be read."""
    try:
        return path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return []


class Supervisor:
    def __init__(self, log_dir: Path, on_event: Callable[[str], None] | None = None):
        self.log_dir = log_dir
        self.services: list[Service] = []
        self.on_event = on_event or (lambda text: log.warning("%s", text))
        self._lock = threading.RLock()
        self._watching = threading.Event()
        self._watcher: threading.Thread | None = None

    def keep_running(self, interval: float = 0.5) -> None:
        """From now on, restart what dies (see the module's docstring), on a thread of its own.

        Children die with the thread that started them (PR_SET_PDEATHSIG), so the
        watcher lives until stop().
        """

        def loop() -> None:
            while self._watching.is_set():
                try:
                    self.watch()
                except Exception:  # the thread must live on: its children die with it
                    log.exception("supervisor: watching failed; trying again")
                time.sleep(interval)

        self._watching.set()
        self._watcher = threading.Thread(target=loop, name="supervisor", daemon=True)
        self._watcher.start()

    def watch(self, now: float | None = None) -> None:
        """One round: note the deaths, restart what is due, give up on crash loops."""
        with self._lock:
            now = time.monotonic() if now is None else now
            for s in list(self.services):
                p = s.process
                if s.state == "running" and p is not None and p.poll() is not None:
                    self._died(s, p.returncode, now)
                if s.state == "backoff" and now >= s.next_start:
                    s.restarts += 1
                    try:
                        self._spawn(s)
                    except (OSError, StartError) as exc:
                        s.last_exit = f"could not start: {exc}"
                        self._died(s, None, now)
                    else:
                        pid = s.process.pid if s.process else "?"
                        self.on_event(f"{s.name} restarted (restart {s.restarts}, pid {pid})")

    def _died(self, s: Service, returncode: int | None, now: float) -> None:
        if returncode is not None:
            s.last_exit, s.last_exit_code = exit_reason(returncode), returncode
        s.last_words = "".join(last_lines(self.log_path(s), 1)).strip()
        ran = now - s.started_at
        s.deaths.append(now)
        while s.deaths and now - s.deaths[0] > CRASH_WINDOW_S:
            s.deaths.popleft()
        if len(s.deaths) >= CRASH_LOOP:
            s.state = "gave up"
            self.on_event(
                f"{s.name} died {len(s.deaths)} times in {CRASH_WINDOW_S / 60:.0f} min ({s.last_exit}): "
                f"given up on, the rest keeps running.\n{self.tail(s)}"
            )
            return
        recent = 0 if ran >= STEADY_S else len(s.deaths) - 1
        delay = BACKOFF_S[min(recent, len(BACKOFF_S) - 1)]
        s.state, s.next_start = "backoff", now + delay
        self.on_event(f"{s.name} stopped unexpectedly ({s.last_exit}); restarting in {delay:.0f} s")

    def start(self, service: Service) -> None:
        with self._lock:
            self._spawn(service)
            self.services.append(service)
        log.info("started %s (pid %d)", service.name, service.process.pid if service.process else -1)

    def _spawn(self, service: Service) -> None:
        if service.listen and port_in_use(*service.listen):
            host, port = service.listen
            raise StartError(
                f"{service.name}: {host}:{port} is already in use (another `make up`?). "
                "Stop it, or choose other ports through the environment (see README)."
            )
        self.log_dir.mkdir(parents=True, exist_ok=True)
        logfile = open(self.log_path(service), "ab")  # noqa: SIM115 - child keeps it
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
        service.state, service.started_at = "running", time.monotonic()

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

    def log_path(self, service: Service) -> Path:
        return self.log_dir / f"{service.name}.log"

    def tail(self, service: Service, lines: int = 20) -> str:
        path = self.log_path(service)
        text = last_lines(path, lines)
        if not text:
            return "(no log)"
        return "\n".join(f"  {service.name}| {line}" for line in text) + f"\n  (full log: {path})"

    def stop_one(self, service: Service, grace: float = 10.0) -> None:
        """Stop one service (SIGTERM, then SIGKILL after `grace` s) and forget it."""
        with self._lock:
            self.services.remove(service)
        service.state = "stopped"
        p = service.process
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                log.warning("%s ignored SIGTERM, killing it", service.name)  # a halted compactor does
                p.kill()
                p.wait()

    def stop(self, grace: float = 10.0) -> None:
        with self._lock:  # no restart from here on
            self._watching.clear()
            for service in self.services:
                service.state = "stopped"
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
