"""The orchestration's own logic, without starting processes."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import yaml

from homewatt import promconfig
from homewatt.config import Settings
from homewatt.httpserver import Handler, Server
from stack.__main__ import halted
from stack.services import Stack


@pytest.fixture
def compactor_metrics() -> Iterator[tuple[str, list[str]]]:
    """A stand-in /metrics endpoint whose text the test sets."""
    body = ["thanos_compact_halted 0\n"]

    class Metrics(Handler):
        def do_GET(self) -> None:  # noqa: N802
            self.reply(200, "text/plain", body[0].encode())

    server = Server(("127.0.0.1", 0), Metrics)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", body
    finally:
        server.shutdown()
        server.server_close()


def test_a_halted_compactor_is_noticed(compactor_metrics):
    url, body = compactor_metrics
    assert not halted(url)
    body[0] = "# HELP thanos_compact_halted Set to 1 if the compactor halted.\nthanos_compact_halted 1\n"
    assert halted(url)


def test_an_unreachable_compactor_is_not_called_halted():
    assert not halted("http://127.0.0.1:9")  # its death is the supervisor's to report


def test_the_committed_prometheus_config_scrapes_the_default_ports():
    """prometheus.yml is what `make up` runs with the default settings: its targets and its
    Alertmanager are the ports the native stack's parts listen on (Thanos's included)."""
    targets = Stack(Settings.from_env({})).scrape_targets()
    rendered = promconfig.render(targets)
    committed = yaml.safe_load(promconfig.SOURCE.read_text())
    assert rendered["scrape_configs"] == committed["scrape_configs"]
    assert rendered["alerting"] == committed["alerting"]
    assert set(targets) == set(promconfig.TARGET_JOBS.values())
