"""Load-model speed: one sensor-day at 1 s, per default home, and the energy ledger's rate.

Goal: one sensor-day (86,400 samples) well under a second.
"""

from __future__ import annotations

import datetime as dt
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from homewatt import loadmodel  # noqa: E402
from homewatt.fleet import load_fleet  # noqa: E402
from homewatt.meter import Ledger  # noqa: E402


def main() -> None:
    fleet = load_fleet()
    print(f"{'sensor':>8} {'winter day':>12} {'summer day':>12} {'samples/s':>12}")
    for s in fleet.sensors:
        row = []
        for d in (dt.date(2026, 1, 15), dt.date(2026, 7, 15)):
            t0 = int(dt.datetime.combine(d, dt.time(), dt.UTC).timestamp())
            ts = np.arange(t0, t0 + 86400)
            loadmodel.power(s, ts)
            runs = []
            for _ in range(5):
                start = time.perf_counter()
                loadmodel.power(s, ts)
                runs.append(time.perf_counter() - start)
            row.append(statistics.median(runs))
        print(
            f"{s.id:>8} {row[0] * 1000:>9.1f} ms {row[1] * 1000:>9.1f} ms {86400 / statistics.mean(row):>12,.0f}"
        )
    ledger = Ledger(fleet.sensors)
    days = range(20_000, 20_030)
    start = time.perf_counter()
    ledger.warm(days)
    took = time.perf_counter() - start
    print(
        f"energy ledger: {len(days) * len(fleet)} sensor-days in {took:.2f} s "
        f"({len(days) * len(fleet) / took:.0f} sensor-days/s)"
    )
    print("goal: one sensor-day well under 1 s")


if __name__ == "__main__":
    main()
