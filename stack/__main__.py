"""`make up` (python -m stack): run the native homewatt stack until Ctrl-C.

Starts the Pushgateway, the exporter and Prometheus (with the recording rules),
waits until every sensor's live power is queryable in Prometheus, backfills the
history right up to where live data starts (first start only), waits until
Prometheus has loaded it, starts the reference partner and the nightly
scheduler (which runs the last midnight at once when no breakdown exists yet),
prints where to look, and on Ctrl-C (or SIGTERM) stops every child before
exiting.
"""

from __future__ import annotations

import logging
import signal
import sys
import time
import urllib.parse

from backfill.api import Options, backfill
from backfill.run import BackfillError, Summary, wait_for_history
from homewatt import promapi
from homewatt.config import Settings
from homewatt.contract import INC1M, INC15M, POWER, USAGE_SHARE
from homewatt.fleet import FleetError, load_fleet
from homewatt.procs import WaitTimeout, wait_until
from stack.services import Stack
from stack.supervisor import StartError, Supervisor

log = logging.getLogger("stack")


class Stop(Exception):
    pass


def _raise_stop(signum: int, _frame: object) -> None:
    raise Stop(signal.Signals(signum).name)


def wait_for_live_data(prometheus_url: str, sensors: int, timeout: float = 30.0) -> float:
    """Seconds until every sensor has a power sample no older than 2 s in Prometheus."""
    start = time.monotonic()
    expr = f"count(time() - timestamp({POWER.name}) <= 2)"

    def all_fresh() -> bool:
        got = promapi.query(prometheus_url, expr)
        return bool(got) and int(float(got[0]["value"][1])) >= sensors

    try:
        wait_until(all_fresh, timeout, f"fresh power for all {sensors} sensors", errors=(promapi.PromError,))
    except WaitTimeout as exc:
        raise StartError(f"Prometheus at {prometheus_url} shows no {exc}") from None
    return time.monotonic() - start


def backfill_history(settings: Settings) -> Summary:
    """Backfill once: the first start writes the history, later starts find it done."""
    log.info("backfilling history (first start only; later starts skip it) ...")
    return backfill(Options(data=settings.data, fleet=settings.fleet, prometheus_url=settings.prometheus_url))


def graph_link(prometheus_url: str, expr: str, range_input: str = "15m") -> str:
    q = urllib.parse.urlencode({"g0.expr": expr, "g0.tab": "0", "g0.range_input": range_input})
    return f"{prometheus_url}/graph?{q}"


def summary(settings: Settings, stack: Stack, n_sensors: int, grafana: bool) -> str:
    p = settings.prometheus_url
    per_minute = graph_link(p, f"{INC1M.name} / 3.6e6", "1h")
    breakdown = graph_link(p, USAGE_SHARE.name, "1h").replace("g0.tab=0", "g0.tab=1")
    per_day = graph_link(p, f"sum_over_time({INC15M.name}[1d]) / 3.6e6", "3y")
    return "\n".join(
        [
            "",
            f"homewatt is up: {n_sensors} sensors, scraped every second.",
            *(
                [
                    f"  Grafana, live:                 {settings.grafana_url}/d/homewatt-live",
                    f"  Grafana, history:              {settings.grafana_url}/d/homewatt-history",
                    f"  Grafana, usage breakdown:      {settings.grafana_url}/d/homewatt-usage",
                ]
                if grafana
                else []
            ),
            f"  Live power (kW), last 15 min:  {graph_link(p, f'{POWER.name} / 1000')}",
            f"  Energy per minute (kWh):       {per_minute}",
            f"  Energy per day (kWh), 3 years: {per_day}",
            f"  Prometheus UI:                 {p}/graph",
            f"  Scrape targets:                {p}/targets",
            f"  Exporter metrics:              http://{settings.exporter_listen}/metrics",
            f"  Usage breakdown (partner):     {breakdown}",
            f"  Pushgateway:                   {settings.pushgateway_url}",
            f"  Reference partner:             {settings.partner_url}/v1/breakdowns",
            f"  Data (TSDB, outbox, logs):     {stack.data}",
            "Ctrl-C stops everything.",
            "",
        ]
    )


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    settings = Settings.from_env()
    try:
        fleet = load_fleet(settings.fleet)
    except FleetError as exc:
        print(f"make up: {exc}", file=sys.stderr)
        return 2
    stack = Stack(settings)
    supervisor = Supervisor(stack.data / "logs")
    signal.signal(signal.SIGINT, _raise_stop)
    signal.signal(signal.SIGTERM, _raise_stop)
    try:
        try:
            for service in stack.services():
                log.info("starting %s ...", service.name)
                supervisor.run(service)
            took = wait_for_live_data(settings.prometheus_url, len(fleet))
            log.info("live data for all %d sensors in Prometheus after %.1f s", len(fleet), took)
            history = backfill_history(settings)
            print(history.text(), flush=True)
            wait_for_history(settings.prometheus_url, history.plan, len(fleet))
            for service in stack.partner_services():
                log.info("starting %s ...", service.name)
                supervisor.run(service)
            grafana = stack.grafana()
            if grafana is not None:
                log.info("starting grafana ...")
                supervisor.run(grafana)
            else:
                log.info(
                    "Grafana: no grafana-server or grafana binary on PATH, so no dashboards here; "
                    "they are provisioned from grafana/ by `docker compose up`"
                )
        except (StartError, FileNotFoundError, BackfillError) as exc:
            print(f"make up: {exc}", file=sys.stderr)
            return 1
        print(summary(settings, stack, len(fleet), grafana is not None), flush=True)
        while True:
            dead = supervisor.dead()
            if dead:
                for s in dead:
                    print(f"make up: {s.name} stopped unexpectedly:\n{supervisor.tail(s)}", file=sys.stderr)
                return 1
            time.sleep(1)
    except Stop as why:
        log.info("%s received, stopping", why)
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the shutdown short
        supervisor.stop()
        log.info("all processes stopped")


if __name__ == "__main__":
    sys.exit(main())
