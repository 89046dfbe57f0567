"""Scrape cost of the exporter for large fleets: in process, then one real scrape over HTTP.

Part 1 (`--part render`) prints, for 1,000 and 10,000 modelled sensors, the median
time of one /metrics body, in process:
  - default registry: labelled Gauge + Counter children, values set, generate_latest();
  - plain custom collector: a client_python Collector yielding metric families;
  - homewatt render: exporter.render.FleetRenderer (what the exporter ships);
  - homewatt scrape: LiveFleet advancing one second (model + counter) and rendering.

Part 2 (`--part scrape`) is what Prometheus sees: a generated fleet (default 9,000
modelled homes and 1,000 devices across Shelly Gen2, Tasmota and Linky TIC,
benchmarks/_fleets.py) written as a fleet file; a real mosquitto; the device
simulator (`python -m devices.simulate`, as `make up` runs it) publishing over
MQTT and writing TIC frames to pseudo-terminals; and the exporter's real server
(exporter.server: MetricsApp and its HTTP handler, devices.hub's MQTT clients and
TIC readers) in a process of its own.  A client scrapes GET /metrics once a second
with Prometheus 2.42's headers (Accept-Encoding: gzip), on a new connection each
time as Prometheus's client does with this server, and times the request up to the
last byte of the body.  Printed: median and p99 of the scrape, the body plain and
gzipped, and the exporter's CPU seconds per second, with and without the scrapes.
Goal: a scrape under 30 ms at 10,000 sensors, devices included.

The exporter process's clock runs a fixed offset ahead, to just after the next UTC
midnight, and the modelled homes' index is read at that midnight: the first second
the exporter serves sums every second since its meters' index reading, which at
9,000 sensors would be minutes of start-up late in the day.  A second's work is the
same at any hour, and the devices' own clocks stay behind the exporter's, as they
must (a reading from the future is dropped).

    python benchmarks/exporter_render.py                       # both parts
    python benchmarks/exporter_render.py --part scrape --profile
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import datetime as dt
import functools
import gc
import gzip
import http.client
import io
import os
import pstats
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._fleets import big_fleet, write_fleet  # noqa: E402
from benchmarks._proc import cpu_seconds  # noqa: E402
from exporter.__main__ import start  # noqa: E402
from exporter.render import FleetRenderer  # noqa: E402
from exporter.server import serve  # noqa: E402
from homewatt.config import Settings  # noqa: E402
from homewatt.contract import DEVICE_LAST_SEEN  # noqa: E402
from homewatt.fleet import load_fleet  # noqa: E402
from homewatt.httpserver import serve_until_stopped  # noqa: E402
from homewatt.live import LiveFleet  # noqa: E402
from homewatt.procs import die_with_parent, free_port, http_ok, wait_until  # noqa: E402
from stack.services import Stack  # noqa: E402
from stack.supervisor import Service, Supervisor  # noqa: E402

DAY = 86_400
GOAL_MS = 30.0
# What Prometheus 2.42 sends with every scrape.
PROMETHEUS_HEADERS = {
    "Accept": "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    "Accept-Encoding": "gzip",
    "User-Agent": "Prometheus/2.42.0",
    "X-Prometheus-Scrape-Timeout-Seconds": "1",
}


def median_ms(fn: Callable[[], object], repeat: int = 15) -> float:
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def render_table() -> None:
    today = dt.datetime.now(dt.UTC).date()
    midnight = int(dt.datetime.combine(today, dt.time(), dt.UTC).timestamp())
    print(
        f"{'sensors':>8} {'default registry':>17} {'plain collector':>16} {'homewatt render':>16} {'homewatt scrape':>16}"
    )
    for n in (1_000, 10_000):
        sensors = big_fleet(n, today)
        ids = [s.id for s in sensors]
        live = LiveFleet(sensors)
        power, energy = live.at(midnight + 10)
        power, energy = power.copy(), energy.copy()

        reg = CollectorRegistry()
        g = Gauge("elec_power_watts", "power", ["sensor"], registry=reg)
        c = Counter("elec_energy_joules", "energy", ["sensor"], registry=reg)
        for i, sid in enumerate(ids):
            g.labels(sid).set(power[i])
            c.labels(sid).inc(energy[i])
        default_ms = median_ms(functools.partial(generate_latest, reg))

        class Plain:
            def collect(self, power=power, energy=energy, ids=ids):
                gf = GaugeMetricFamily("elec_power_watts", "power", labels=["sensor"])
                cf = CounterMetricFamily("elec_energy_joules", "energy", labels=["sensor"])
                for sid, p, e in zip(ids, power.tolist(), energy.tolist(), strict=True):
                    gf.add_metric([sid], p)
                    cf.add_metric([sid], e)
                yield gf
                yield cf

        plain_reg = CollectorRegistry()
        plain_reg.register(Plain())
        plain_ms = median_ms(functools.partial(generate_latest, plain_reg))

        renderer = FleetRenderer(ids)
        render_ms = median_ms(functools.partial(renderer.render, power, energy))

        clock = iter(range(midnight + 11, midnight + 10_000))

        def scrape(live=live, renderer=renderer, clock=clock) -> str:
            p, e = live.at(next(clock))
            return renderer.render(p, e)

        scrape_ms = median_ms(scrape)
        assert np.all(power >= 0)
        print(
            f"{n:>8} {default_ms:>14.1f} ms {plain_ms:>13.1f} ms {render_ms:>13.1f} ms {scrape_ms:>13.1f} ms"
        )
    print("in process, modelled sensors only (model step + text)")


# --- part 2: the exporter's process ---------------------------------------------------


SLOW_S = 0.020  # a scrape this slow is logged, with the garbage collection in it


class Pauses:
    """Garbage collections that hold the GIL for more than a millisecond, and the part of
    them inside a slow scrape (logged to the exporter's log for the report)."""

    def __init__(self) -> None:
        self.done: list[tuple[float, float, int]] = []  # (start, end, generation)
        self._start = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        elif time.perf_counter() - self._start > 0.001:
            self.done = [*self.done[-999:], (self._start, time.perf_counter(), info["generation"])]

    def timed(self, metrics: Callable[..., bytes], ready: Callable[[float], bool]) -> Callable[..., bytes]:
        """`metrics` logging its slow calls; `ready(now)`: whether the second was computed ahead."""

        def wrapper(now: float, gzip: bool = False) -> bytes:
            ahead = ready(now)
            start, cpu = time.perf_counter(), time.thread_time()
            try:
                return metrics(now, gzip)
            finally:
                end, cpu = time.perf_counter(), time.thread_time() - cpu
                if end - start > SLOW_S:
                    gc_s = sum(min(b, end) - max(a, start) for a, b, _ in self.done if b > start and a < end)
                    print(
                        f"slow scrape: {(end - start) * 1000:.1f} ms, gc {gc_s * 1000:.1f} ms, "
                        f"on the CPU {cpu * 1000:.1f} ms, second computed ahead {'yes' if ahead else 'no'} "
                        f"(at .{int(now % 1 * 1000):03d} s)",
                        file=sys.stderr,
                    )

        return wrapper


def serve_shifted(fleet_file: str, data: str, listen: str, offset: float, profile: str | None) -> None:
    """The exporter as `python -m exporter` builds it, its clock `offset` seconds ahead."""
    die_with_parent()
    pauses = Pauses()

    def clock() -> float:
        return time.time() + offset

    app, devices = start(load_fleet(fleet_file), Path(data), clock)
    app.metrics = pauses.timed(app.metrics, lambda now: int(now) in app.ahead._ready)  # type: ignore[method-assign]
    if profile:
        profiler = cProfile.Profile()
        plain = app.metrics

        def metrics(now: float | None = None, gzip: bool = False) -> bytes:
            profiler.enable()
            try:
                return plain(now, gzip)
            finally:
                profiler.disable()

        app.metrics = metrics  # type: ignore[method-assign]

        def dump(*_: object) -> None:
            profiler.dump_stats(profile)
            raise KeyboardInterrupt

        signal.signal(signal.SIGUSR1, dump)
    host, _, port = listen.rpartition(":")
    server = serve(app, host, int(port))
    try:
        serve_until_stopped(server)
    finally:
        devices.stop()


# --- part 2: the measuring side ---------------------------------------------------------


@dataclasses.dataclass
class Scrape:
    seconds: float
    wire: int  # bytes received
    body: bytes  # decompressed
    encoding: str
    first_byte: float  # seconds until the response's headers were in

    @property
    def render(self) -> float:
        """The exporter's own time for the body (homewatt_exporter_render_seconds)."""
        at = self.body.rindex(b"\nhomewatt_exporter_render_seconds ")
        return float(self.body[at:].split(None, 2)[1])


def scrape(host: str, port: int, headers: dict[str, str]) -> Scrape:
    """One GET /metrics on a new connection, timed to the body's last byte."""
    start = time.perf_counter()
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("GET", "/metrics", headers=headers)
        resp = conn.getresponse()
        first = time.perf_counter() - start
        raw = resp.read()
        took = time.perf_counter() - start
        if resp.status != 200:
            raise RuntimeError(f"/metrics answered {resp.status}")
        encoding = resp.getheader("Content-Encoding") or "identity"
    finally:
        conn.close()
    body = gzip.decompress(raw) if encoding == "gzip" else raw
    return Scrape(took, len(raw), body, encoding, first)


def quantiles_ms(times: list[float]) -> tuple[float, float, float]:
    ms = sorted(t * 1000 for t in times)
    return statistics.median(ms), ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))], ms[-1]


def scrape_every_second(host: str, port: int, n: int, headers: dict[str, str]) -> list[Scrape]:
    """`n` scrapes, one a second at a fixed phase of the wall clock, as Prometheus's 1 s interval
    does.  Timed on the wall clock, which the exporter reads, not the monotonic one: this
    machine's wall clock has been seen slewed by 5 ms a second, which would drift the phase
    by 1.5 s over 300 scrapes."""
    out = []
    t0 = time.time()
    for k in range(n):
        out.append(scrape(host, port, headers))
        time.sleep(max(0.0, t0 + (k + 1) - time.time()))
    return out


def http_scrape(args: argparse.Namespace) -> None:
    n, n_dev = args.sensors, args.devices
    root = Path(tempfile.mkdtemp(prefix="homewatt-scrape-"))
    broker_port, exporter_port = free_port(), free_port()
    now = time.time()
    midnight = (int(now) // DAY + 1) * DAY  # the exporter's clock starts just after it
    offset = midnight + 5 - now
    fleet = big_fleet(
        n, dt.date(1970, 1, 1) + dt.timedelta(days=midnight // DAY), n_dev, f"mqtt://127.0.0.1:{broker_port}"
    )
    today = dt.datetime.fromtimestamp(now, dt.UTC).date()  # the simulator runs on the real clock
    fleet = tuple(dataclasses.replace(s, index_date=today) if s.device else s for s in fleet)
    fleet_file = write_fleet(root / "fleet.yaml", fleet)
    settings = Settings.from_env(
        {
            **os.environ,
            "HOMEWATT_DATA": str(root / "data"),
            "HOMEWATT_FLEET": str(fleet_file),
            "EXPORTER_LISTEN": f"127.0.0.1:{exporter_port}",
        }
    )
    stack = Stack(settings)
    profile = str(root / "scrape.prof") if args.profile else None
    argv = [
        sys.executable,
        __file__,
        "--serve",
        str(fleet_file),
        str(settings.data),
        settings.exporter_listen,
    ]
    argv += [repr(offset)] + ([profile] if profile else [])
    exporter = Service(
        name="exporter",
        argv=argv,
        listen=("127.0.0.1", exporter_port),
        ready=http_ok(f"http://{settings.exporter_listen}/metrics"),
        ready_timeout=300.0,
    )
    print(
        f"\nfleet: {n - n_dev:,} modelled + {n_dev:,} devices, scraped at .{round(args.phase * 100):02d} s "
        f"({', '.join(f'{k} {v}' for k, v in device_mix(fleet).items())}); data in {root}"
    )
    with Supervisor(root / "logs") as sup:
        started = time.monotonic()
        sup.run(stack.mosquitto("127.0.0.1", broker_port))
        sup.run(stack.simulator())
        sup.run(exporter)
        assert exporter.process is not None
        pid = exporter.process.pid

        def devices_heard() -> bool:
            body = scrape("127.0.0.1", exporter_port, {}).body
            return body.count(f"\n{DEVICE_LAST_SEEN.name}{{".encode()) >= n_dev

        wait_until(devices_heard, 300, f"all {n_dev} devices heard")
        print(f"up in {time.monotonic() - started:.0f} s (fleet files parsed, devices all heard)")
        time.sleep(5)
        cpu0, t0 = cpu_seconds(pid, with_children=True), time.monotonic()
        time.sleep(args.idle)
        idle_cpu = (cpu_seconds(pid, with_children=True) - cpu0) / (time.monotonic() - t0)
        # Prometheus scrapes at a phase of its own; just before a second's end is the hardest.
        time.sleep((args.phase - (time.time() + offset)) % 1.0)
        cpu0, t0 = cpu_seconds(pid, with_children=True), time.monotonic()
        scrapes = scrape_every_second("127.0.0.1", exporter_port, args.scrapes, PROMETHEUS_HEADERS)
        busy_cpu = (cpu_seconds(pid, with_children=True) - cpu0) / (time.monotonic() - t0)
        plain = scrape_every_second("127.0.0.1", exporter_port, min(args.scrapes, 30), {})
        sim = [s for s in sup.services if s.name == "simulator"][0]
        assert sim.process is not None
        sim_cpu = cpu_seconds(sim.process.pid) / (time.monotonic() - started)
        if profile:
            proc = exporter.process
            proc.send_signal(signal.SIGUSR1)
            wait_until(lambda: Path(profile).exists() and proc.poll() is not None, 30, "the profile")
    report(scrapes, plain, idle_cpu, busy_cpu, sim_cpu, n_dev)
    slow_scrapes(root / "logs" / "exporter.log")
    if profile:
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats("cumulative").print_stats(30)
        print(out.getvalue())


def device_mix(fleet: tuple) -> dict[str, int]:
    out: dict[str, int] = {}
    for s in fleet:
        if s.device is not None:
            out[s.device.format] = out.get(s.device.format, 0) + 1
    return out


def slow_scrapes(log: Path) -> None:
    """How many scrapes took the exporter over SLOW_S, and the garbage collection's share."""
    rows = [
        line.split()
        for line in log.read_text(errors="replace").splitlines()
        if line.startswith("slow scrape:")
    ]
    took = [float(r[2]) for r in rows]
    gc_ms = [float(r[5]) for r in rows]
    cpu_ms = [float(r[10]) for r in rows]
    missed = sum(r[15] == "no" for r in rows)
    if rows:
        print(
            f"scrapes over {SLOW_S * 1000:.0f} ms in the exporter, the whole run: {len(rows)}, "
            f"{missed} of them computing their second (not ready ahead), "
            f"{sum(g >= 1 for g in gc_ms)} with a garbage collection in them; of their "
            f"{sum(took):.0f} ms, {sum(cpu_ms):.0f} on the CPU and {sum(gc_ms):.0f} collecting garbage "
            "(the rest: waiting for the GIL or a core)"
        )


def report(
    scrapes: list[Scrape], plain: list[Scrape], idle_cpu: float, busy_cpu: float, sim_cpu: float, n_dev: int
) -> None:
    last = scrapes[-1]
    body = last.body
    med, p99, worst = quantiles_ms([s.seconds for s in scrapes])
    pmed, pp99, pworst = quantiles_ms([s.seconds for s in plain])
    lines = body.count(b"\n") - body.count(b"\n#")
    print(f"{'GET /metrics, 1 s interval':<34} {'scrapes':>7} {'median ms':>10} {'p99 ms':>8} {'max ms':>8}")
    print(
        f"{'Prometheus headers (' + last.encoding + ')':<34} {len(scrapes):>7} {med:>10.1f} {p99:>8.1f} {worst:>8.1f}"
    )
    print(
        f"{'no Accept-Encoding (' + plain[-1].encoding + ')':<34} {len(plain):>7} {pmed:>10.1f} {pp99:>8.1f} {pworst:>8.1f}"
    )
    for label, values in (
        ("  of which: to the headers (gzip)", [s.first_byte for s in scrapes]),
        ("  exporter's render_seconds", [s.render for s in scrapes]),
    ):
        q = quantiles_ms(values)
        print(f"{label:<34} {len(values):>7} {q[0]:>10.1f} {q[1]:>8.1f} {q[2]:>8.1f}")
    gz = len(gzip.compress(body, 1)) if last.encoding != "gzip" else last.wire
    print(
        f"body: {len(body) / 1e6:.2f} MB plain, {gz / 1e6:.2f} MB gzip ({lines:,} samples); "
        f"devices' families: {body.count(b'homewatt_device_'):,} lines"
    )
    print(
        f"exporter CPU: {busy_cpu:.3f} s/s scraped every second, {idle_cpu:.3f} s/s unscraped "
        f"({n_dev:,} devices' messages); the simulator: {sim_cpu:.2f} s/s"
    )
    print(f"goal: median and p99 under {GOAL_MS:.0f} ms -> {'met' if p99 < GOAL_MS else 'NOT met'}")


def main() -> None:
    if sys.argv[1:2] == ["--serve"]:
        fleet_file, data, listen, offset = sys.argv[2:6]
        serve_shifted(fleet_file, data, listen, float(offset), sys.argv[6] if len(sys.argv) > 6 else None)
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=("render", "scrape", "all"), default="all")
    ap.add_argument(
        "--sensors", type=int, default=10_000, help="sensors in the scraped fleet (default 10,000)"
    )
    ap.add_argument("--devices", type=int, default=1_000, help="of which devices (default 1,000)")
    ap.add_argument("--scrapes", type=int, default=120, help="scrapes, one a second (default 120)")
    ap.add_argument("--idle", type=float, default=20.0, help="seconds of unscraped CPU measure (default 20)")
    ap.add_argument(
        "--phase",
        type=float,
        default=0.97,
        help="where in the exporter's second the scrapes start (default 0.97: just before its end, "
        "where a late scrape asks for the second after the one computed ahead)",
    )
    ap.add_argument("--profile", action="store_true", help="profile the exporter's scrapes (cProfile)")
    args = ap.parse_args()
    if args.part in ("render", "all"):
        render_table()
    if args.part in ("scrape", "all"):
        http_scrape(args)


if __name__ == "__main__":
    main()
