"""Synthetic large fleets for benchmarks: the default homes replicated with new ids and seeds."""

from __future__ import annotations

import dataclasses
import datetime as dt

from homewatt.fleet import Sensor, load_fleet


def big_fleet(n: int, index_date: dt.date) -> tuple[Sensor, ...]:
    base = load_fleet().sensors
    return tuple(
        dataclasses.replace(base[i % len(base)], id=f"b-{i:06d}", seed=10_000 + i, index_date=index_date)
        for i in range(n)
    )
