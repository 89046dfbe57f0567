"""Process and network helpers shared by the features, the orchestration and the tests.

`die_with_parent` is why a killed `make up` or backfill leaves no orphan
promtool or worker behind; `wait_until` is the one polling loop of the project,
so every wait has a deadline and says what it waited for when it gives up.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import socket
import time
from collections.abc import Callable
from typing import TypeVar

import requests

T = TypeVar("T")

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Ask the kernel to SIGTERM this process when its parent dies (Linux), so nothing is orphaned."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class WaitTimeout(TimeoutError):
    pass


def wait_until(
    check: Callable[[], T | None],
    timeout: float,
    what: str,
    interval: float = 0.5,
    errors: tuple[type[BaseException], ...] = (),
) -> T:
    """Call `check` until it returns something truthy, and return that; give up after `timeout` s.

    Exceptions listed in `errors` count as "not yet" (a server still starting);
    the last one is named in the timeout message, which starts with `what`.
    """
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            got = check()
            if got:
                return got
        except errors as exc:
            last = exc
        if time.monotonic() >= deadline:
            why = f" (last error: {last})" if last else ""
            raise WaitTimeout(f"{what}: not after {timeout:.0f} s{why}")
        time.sleep(interval)


def http_ok(url: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return requests.get(url, timeout=1).status_code == 200
        except requests.RequestException:
            return False

    return check


def port_in_use(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
