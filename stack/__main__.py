"""`make up` (python -m stack): run the native homewatt stack until Ctrl-C.

Starts the Pushgateway, the exporter, Prometheus (the 1m rules and the alerts), the
alert receiver and Alertmanager, waits until
every sensor's live power is queryable, starts the Thanos tier (sidecar, store
gateway, Query, Ruler, the two compactors) on a directory bucket, backfills the
history into that bucket right up to where live data starts (first start only),
waits until Thanos Query serves it, starts the reference partner and the
nightly scheduler (which runs the last midnight at once when no breakdown
exists yet), prints where to look, and on Ctrl-C (or SIGTERM) stops every
child before exiting.  While it runs it restarts a part that dies (stack/supervisor.py),
serves each part's restarts on /metrics, writes its state for `status`, and
watches the compactors: a halted one is reported once, with the log to read.

`python -m stack up --background` (make up-bg) runs the same detached and
returns once it is up; `status` and `down` (make status, make down) read and
stop it through data/run/stack.json.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse

import requests
from prometheus_client.parser import text_string_to_metric_families

from backfill.api import Options, backfill
from backfill.run import BackfillError, Summary, wait_for_history
from homewatt import promapi
from homewatt.config import Settings, hostport
from homewatt.contract import DEVICE_LAST_SEEN, INC1M, INC15M, POWER, USAGE_SHARE
from homewatt.fleet import Fleet, FleetError, load_fleet
from homewatt.procs import WaitTimeout, die_with_parent, wait_until
from stack import status
from stack.services import Stack
from stack.supervisor import StartError, Supervisor, last_lines
from stack.thanos import COMPACTORS, Thanos, ThanosMissing

log = logging.getLogger("stack")


class Stop(Exception):
    pass


def _raise_stop(signum: int, _frame: object) -> None:
    raise Stop(signal.Signals(signum).name)


def wait_for_live_data(prometheus_urls: list[str], sensors: int, timeout: float = 30.0) -> float:
    """Seconds until every sensor has a power sample no older than 2 s in Prometheus (in
    one of the shards: each keeps its own sensors)."""
    start = time.monotonic()
    expr = f"count(time() - timestamp({POWER.name}) <= 2)"

    def fresh(url: str) -> int:
        got = promapi.query(url, expr)
        return int(float(got[0]["value"][1])) if got else 0

    def all_fresh() -> bool:
        return sum(fresh(url) for url in prometheus_urls) >= sensors

    try:
        wait_until(all_fresh, timeout, f"fresh power for all {sensors} sensors", errors=(promapi.PromError,))
    except WaitTimeout as exc:
        raise StartError(f"Prometheus at {', '.join(prometheus_urls)} shows no {exc}") from None
    return time.monotonic() - start


def backfill_history(settings: Settings, thanos: Thanos) -> Summary:
    """Backfill once into the bucket: the first start writes and uploads the history,
    later starts find it done (the journal) and uploaded (the shipper's file).

    The history is written once, without a shard label: Query merges it with each
    sensor's live series whichever shard keeps them (homewatt/shards.py).  The live
    start is read where every sensor is: the one Prometheus, or Query over the shards.
    """
    log.info("backfilling history into the bucket (first start only; later starts skip it) ...")
    return backfill(
        Options(
            data=settings.data,
            fleet=settings.fleet,
            prometheus_url=settings.prometheus_url if settings.shards == 1 else settings.history_url,
            pushgateway_url=settings.pushgateway_url,
            raw_days=settings.raw_days,
            history_days=settings.history_days,
            bucket_dir=settings.data / "backfill",
            objstore_config=thanos.objstore_config(),
            upload=True,
            thanos=thanos.binary,
            prometheus_config=thanos.prometheus_config,
        )
    )


def halted(url: str) -> bool:
    """Whether the compactor serving metrics at `url` has halted (it then does nothing until restarted)."""
    try:
        text = requests.get(f"{url}/metrics", timeout=5).text
    except requests.RequestException:
        return False
    return any(
        sample.value == 1
        for family in text_string_to_metric_families(text)
        if family.name == "thanos_compact_halted"
        for sample in family.samples
    )


def graph_link(prometheus_url: str, expr: str, range_input: str = "15m") -> str:
    q = urllib.parse.urlencode({"g0.expr": expr, "g0.tab": "0", "g0.range_input": range_input})
    return f"{prometheus_url}/graph?{q}"


def summary(settings: Settings, stack: Stack, fleet: Fleet, grafana: bool) -> str:
    p, q = stack.live_url, settings.history_url
    per_minute = graph_link(q, f"{INC1M.name} / 3.6e6", "1h")
    breakdown = graph_link(p, USAGE_SHARE.name, "1h").replace("g0.tab=0", "g0.tab=1")
    per_day = graph_link(q, f"sum_over_time({INC15M.name}[1d]) / 3.6e6", "3y")
    return "\n".join(
        [
            "",
            f"homewatt is up: {len(fleet)} sensors, scraped every second.",
            *(
                f"  Device {s.id}: {s.device.format}"
                + (
                    f" at {s.device.broker}, topic {s.device.topic}"
                    if s.device.broker
                    else f" on {s.device.port}"
                )
                + (" (simulated)" if s.device.simulated else "")
                for s in fleet.devices
                if s.device is not None
            ),
            *(
                [
                    f"  Grafana, live:                 {settings.grafana_url}/d/homewatt-live",
                    f"  Grafana, history:              {settings.grafana_url}/d/homewatt-history",
                    f"  Grafana, usage breakdown:      {settings.grafana_url}/d/homewatt-usage",
                    f"  Grafana, fleet health:         {settings.grafana_url}/d/homewatt-fleet-health",
                ]
                if grafana
                else []
            ),
            f"  Live power (kW), last 15 min:  {graph_link(p, f'{POWER.name} / 1000')}",
            f"  Energy per minute (kWh):       {per_minute}",
            f"  Energy per day (kWh), 3 years: {per_day}",
            *(
                [f"  Prometheus UI (live, 3 days):  {p}/graph"]
                if settings.shards == 1
                else [
                    f"  Prometheus shard {i} (3 days):   {url}/graph"
                    for i, url in enumerate(stack.prometheus_urls())
                ]
            ),
            f"  Thanos Query UI (3 years):     {q}/graph",
            f"  Thanos stores (bucket, live):  {q}/stores",
            f"  Scrape targets:                {settings.prometheus_url}/targets",
            f"  Exporter metrics:              http://{settings.exporter_listen}/metrics",
            *(
                [f"  Devices, seconds since heard:  {graph_link(p, f'time() - {DEVICE_LAST_SEEN.name}')}"]
                if fleet.devices
                else []
            ),
            f"  Usage breakdown (partner):     {breakdown}",
            f"  Alerts (rules, pending):       {settings.prometheus_url}/alerts",
            f"  Alertmanager:                  {settings.alertmanager_url}/#/alerts",
            f"  Notifications received:        http://{settings.receiver_listen}/",
            f"  Pushgateway:                   {settings.pushgateway_url}",
            f"  Reference partner:             {settings.partner_url}/v1/breakdowns",
            f"  Data (TSDB, bucket, logs):     {stack.data}",
            "Ctrl-C stops everything.",
            "",
        ]
    )


def run(settings: Settings, fleet: Fleet) -> int:
    """The foreground stack: start everything, keep it running, stop it all on SIGINT/SIGTERM."""
    stack = Stack(settings)

    def event(text: str) -> None:
        print(f"make up: {text}", file=sys.stderr, flush=True)

    supervisor = Supervisor(stack.data / "logs", on_event=event)
    phase, text = "starting", ""
    signal.signal(signal.SIGINT, _raise_stop)
    signal.signal(signal.SIGTERM, _raise_stop)
    host, port = hostport(settings.stack_listen)
    try:
        metrics = status.serve(supervisor, host, port, stack.data / "bucket")
    except OSError as exc:
        print(
            f"make up: cannot serve the stack's metrics on {host}:{port}: {exc} (HOMEWATT_STACK_LISTEN)",
            file=sys.stderr,
        )
        return 1
    threading.Thread(target=metrics.serve_forever, name="stack metrics", daemon=True).start()
    status.write(stack.data, status.snapshot(supervisor, phase))
    try:
        try:
            for service in [*stack.services(), *stack.alerting_services()]:
                log.info("starting %s ...", service.name)
                supervisor.run(service)
            supervisor.keep_running()  # from here on, a part that dies is restarted
            took = wait_for_live_data(stack.prometheus_urls(), len(fleet.modelled))
            log.info(
                "live data for all %d modelled sensors in Prometheus after %.1f s", len(fleet.modelled), took
            )
            thanos = stack.thanos()
            for service in thanos.services():
                log.info("starting %s ...", service.name)
                supervisor.run(service)
            history = backfill_history(settings, thanos)
            print(history.text(), flush=True)
            log.info("waiting until Thanos Query serves the history (the store syncs every minute) ...")
            wait_for_history(settings.history_url, history.plan, len(fleet.modelled), timeout=300)
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
        except (StartError, FileNotFoundError, ThanosMissing, BackfillError) as exc:
            print(f"make up: {exc}", file=sys.stderr)
            return 1
        phase, text = "up", summary(settings, stack, fleet, grafana is not None)
        print(text, flush=True)
        reported: set[str] = set()
        tick = 0
        while True:
            tick += 1
            status.write(stack.data, status.snapshot(supervisor, phase, text))
            if tick % 60 == 1:
                for name in COMPACTORS.values():
                    if name not in reported and halted(f"http://{thanos.addr(f'{name}-http')}"):
                        reported.add(name)
                        print(
                            f"make up: thanos-{name} has HALTED (thanos_compact_halted 1): it compacts, "
                            f"downsamples and expires nothing until restarted; see "
                            f"{stack.data / 'logs' / f'thanos-{name}.log'} and docs/operations.md",
                            file=sys.stderr,
                            flush=True,
                        )
            time.sleep(1)
    except Stop as why:
        log.info("%s received, stopping", why)
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the shutdown short
        status.write(stack.data, status.snapshot(supervisor, "stopping"))
        supervisor.stop()
        metrics.shutdown()
        metrics.server_close()
        status.state_path(stack.data).unlink(missing_ok=True)
        log.info("all processes stopped")


def background(settings: Settings, timeout: float = 900.0) -> int:
    """`make up-bg`: the same stack, detached; return once it is up, with the same summary."""
    running = status.read(settings.data)
    if running is not None:
        print(
            f"make up-bg: a stack already runs (pid {running['runner_pid']}): `make status`", file=sys.stderr
        )
        return 1
    logs = settings.data / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / "stack.log", "ab") as out:
        child = subprocess.Popen(
            [sys.executable, "-m", "stack", "up", "--detached"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # outlives this command and the terminal
        )
    print(f"make up-bg: starting (pid {child.pid}); its output goes to {logs / 'stack.log'} ...", flush=True)

    def up() -> dict[str, object] | None:
        if child.poll() is not None:
            log_end = "\n".join(last_lines(logs / "stack.log", 30))
            raise StartError(f"the stack exited with {child.returncode}:\n{log_end}")
        state = status.read(settings.data)
        return state if state is not None and state.get("phase") == "up" else None

    try:
        state = wait_until(up, timeout, "the stack up", interval=1.0)
    except (StartError, WaitTimeout) as exc:
        print(f"make up-bg: {exc}", file=sys.stderr)
        return 1
    print(
        str(state["summary"]).replace("Ctrl-C stops everything.", "`make status`, `make logs`, `make down`.")
    )
    return 0


def show_status(settings: Settings) -> int:
    state = status.read(settings.data)
    if state is None:
        print(f"no homewatt stack runs on {settings.data} (`make up` or `make up-bg` starts one)")
        return 3
    print(f"homewatt stack: {state['phase']}, runner pid {state['runner_pid']}, data {settings.data}")
    print(status.table(state))
    return 0


def down(settings: Settings, timeout: float = 60.0) -> int:
    state = status.read(settings.data)
    if state is None:
        print(f"no homewatt stack runs on {settings.data}")
        return 0
    pid = int(state["runner_pid"])
    os.kill(pid, signal.SIGTERM)
    try:
        wait_until(lambda: not status.alive(pid), timeout, f"runner {pid} stopped", interval=0.2)
    except WaitTimeout:
        print(f"make down: runner {pid} still there after {timeout:.0f} s; killing it", file=sys.stderr)
        os.kill(pid, signal.SIGKILL)  # its children die with it (PR_SET_PDEATHSIG)
    print("homewatt stack stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stack", description=__doc__.split("\n")[0])
    parser.add_argument("command", nargs="?", default="up", choices=["up", "status", "down"])
    parser.add_argument("--background", action="store_true", help="up: detach, return once up (make up-bg)")
    parser.add_argument("--detached", action="store_true", help=argparse.SUPPRESS)  # up-bg's own runner
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    settings = Settings.from_env()
    if args.command == "status":
        return show_status(settings)
    if args.command == "down":
        return down(settings)
    try:
        fleet = load_fleet(settings.fleet)
    except FleetError as exc:
        print(f"make up: {exc}", file=sys.stderr)
        return 2
    if args.background:
        return background(settings)
    running = status.read(settings.data)
    if running is not None:
        print(
            f"make up: a stack already runs on {settings.data} (pid {running['runner_pid']}): `make status`",
            file=sys.stderr,
        )
        return 1
    if not args.detached:
        # In the foreground, the runner goes with what started it (make, a terminal, a test):
        # a SIGKILLed `make up` leaves nothing behind; the detached one outlives up-bg's command.
        die_with_parent()
    return run(settings, fleet)


if __name__ == "__main__":
    sys.exit(main())
