"""Scrape cost of the exporter for large fleets: client_python's registry vs homewatt's renderer.

Prints, for 1,000 and 10,000 sensors, the median time of one /metrics body:
  - default registry: labelled Gauge + Counter children, values set, generate_latest();
  - plain custom collector: a client_python Collector yielding metric families;
  - homewatt render: exporter.render.FleetRenderer (what the exporter ships);
  - homewatt scrape: LiveFleet advancing one second (model + counter) and rendering.
Goal: homewatt scrape <= 20 ms at 10,000 sensors.
"""

from __future__ import annotations

import datetime as dt
import functools
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._fleets import big_fleet  # noqa: E402
from exporter.render import FleetRenderer  # noqa: E402
from homewatt.live import LiveFleet  # noqa: E402


def median_ms(fn: Callable[[], object], repeat: int = 15) -> float:
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
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
    print("goal: homewatt scrape <= 20 ms at 10,000 sensors (1 s scrape interval)")


if __name__ == "__main__":
    main()
