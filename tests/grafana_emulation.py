"""What Grafana does to a panel's query before Prometheus sees it, for tests without Grafana.

- the panel's time range: the dashboard's, or its `timeFrom` override (Grafana's
  describeTextRange: `now/d` -> today so far), then its `timeShift` (`1M` shifts
  both ends by a month; `1M/M` also rounds from down and to up to the month);
  date math in the dashboard's timezone, weeks starting on Monday;
- `$__interval`: range / maxDataPoints rounded to a round value (Grafana's
  roundInterval table), never below the panel's or datasource's minimum;
- `${__from:date:seconds}`, `${__to:date:seconds}`, `$sensor`;
- range queries: start and end aligned down to the step in the dashboard's
  timezone (Grafana's alignRange with the UTC offset at `to`); instant queries
  at `to`.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from dataclasses import dataclass
from typing import Any

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
DATASOURCE_MIN = {"homewatt-prometheus": 1, "homewatt-history": 900}

# Grafana's roundInterval: (upper bound ms, value ms)
ROUND = [
    (1_500, 1_000),
    (3_500, 2_000),
    (7_500, 5_000),
    (12_500, 10_000),
    (17_500, 15_000),
    (25_000, 20_000),
    (45_000, 30_000),
    (90_000, 60_000),
    (180_000, 120_000),
    (450_000, 300_000),
    (1_050_000, 600_000),
    (1_500_000, 900_000),
    (2_700_000, 1_200_000),
    (5_400_000, 1_800_000),
    (9_000_000, 3_600_000),
    (16_200_000, 7_200_000),
    (32_400_000, 10_800_000),
    (86_400_000, 21_600_000),
    (604_800_000, 86_400_000),
    (1_814_400_000, 604_800_000),
    (3_628_800_000, 2_592_000_000),
]


def round_interval(ms: float) -> int:
    for bound, value in ROUND:
        if ms < bound:
            return value
    return 31_536_000_000


def fmt_duration(seconds: int) -> str:
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0 and seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def parse_duration(text: str) -> int:
    return sum(int(n) * UNITS[u] for n, u in re.findall(r"(\d+)([smhdw])", text))


def _floor(t: dt.datetime, unit: str) -> dt.datetime:
    if unit == "d":
        return t.replace(hour=0, minute=0, second=0, microsecond=0)
    if unit == "w":
        return _floor(t, "d") - dt.timedelta(days=t.weekday())
    if unit == "M":
        return _floor(t, "d").replace(day=1)
    if unit == "y":
        return _floor(t, "d").replace(month=1, day=1)
    raise ValueError(unit)


def _add(t: dt.datetime, n: int, unit: str) -> dt.datetime:
    tz = t.tzinfo
    naive = t.replace(tzinfo=None)
    if unit in ("M", "y"):
        months = n * (12 if unit == "y" else 1)
        y, m = divmod(naive.month - 1 + months, 12)
        year, month = naive.year + y, m + 1
        day = min(
            naive.day, [31, 29 if year % 4 == 0 else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1]
        )
        naive = naive.replace(year=year, month=month, day=day)
    else:
        naive = naive + dt.timedelta(seconds=n * UNITS[unit])
    return naive.replace(tzinfo=tz)  # wall-clock arithmetic, as moment.js does


def date_math(expr: str, base: dt.datetime, round_up: bool) -> dt.datetime:
    """Grafana date math relative to `base` ('now-1M/M', 'now/d', ...)."""
    m = re.fullmatch(r"now(?:([+-])(\d+)([smhdwMy]))?(?:/([dwMy]))?", expr)
    if not m:
        raise ValueError(expr)
    t = base
    if m[1]:
        t = _add(t, int(m[2]) * (1 if m[1] == "+" else -1), m[3])
    if m[4]:
        t = _floor(t, m[4])
        if round_up:
            t = _add(t, 1, m[4]) - dt.timedelta(milliseconds=1)
    return t


@dataclass
class Query:
    expr: str
    instant: bool
    start: float
    end: float
    step: int
    panel: str
    datasource: str = "homewatt-prometheus"


def panel_range(
    dashboard: dict[str, Any], panel: dict[str, Any], now: dt.datetime
) -> tuple[dt.datetime, dt.datetime]:
    tz = zoneinfo.ZoneInfo(dashboard["timezone"])
    local_now = now.astimezone(tz)
    frm, to = dashboard["time"]["from"], dashboard["time"]["to"]
    if panel.get("timeFrom"):
        tf = panel["timeFrom"]
        if not tf.startswith("now"):
            tf = f"now-{tf}"
        frm, to = tf, "now"
    start, end = date_math(frm, local_now, False), date_math(to, local_now, True)
    if panel.get("timeShift"):
        m = re.fullmatch(r"(\d+)([smhdwMy])(?:/([dwMy]))?", panel["timeShift"])
        assert m, panel["timeShift"]
        shift = f"now-{m[1]}{m[2]}" + (f"/{m[3]}" if m[3] else "")
        start, end = date_math(shift, start, False), date_math(shift, end, True)
    return start, end


def queries(
    dashboard: dict[str, Any], now: dt.datetime, sensor: str, time_range: tuple[str, str] | None = None
) -> list[Query]:
    """Every target of every panel, as Prometheus would receive it."""
    dash = dict(dashboard)
    if time_range:
        dash["time"] = {"from": time_range[0], "to": time_range[1]}
    out = []
    for panel in dash["panels"]:
        start, end = panel_range(dash, panel, now)
        ds = panel["datasource"]["uid"]
        for target in panel["targets"]:
            minimum = parse_duration(target.get("interval") or panel.get("interval") or "0s")
            minimum = max(minimum, DATASOURCE_MIN[ds])
            points = panel.get("maxDataPoints", 1000)
            raw_ms = (end - start).total_seconds() * 1000 / points
            step = max(minimum, round_interval(raw_ms) // 1000)
            subs = {
                "${__from:date:seconds}": str(int(start.timestamp())),
                "${__to:date:seconds}": str(int(end.timestamp())),
                "${__interval}": fmt_duration(step),
                "$__interval": fmt_duration(step),
                "$sensor": sensor,
            }
            expr = target["expr"]
            for k, v in subs.items():
                expr = expr.replace(k, v)
            assert "$" not in expr, expr
            offset = int(end.utcoffset().total_seconds())  # type: ignore[union-attr]
            s, e = start.timestamp(), end.timestamp()
            if not target.get("instant"):
                s = (s + offset) // step * step - offset
                e = (e + offset) // step * step - offset
            out.append(Query(expr, bool(target.get("instant")), s, e, step, panel["title"], ds))
    return out


def moment_format(t: dt.datetime, fmt: str) -> str:
    """The two moment.js formats the dashboards use."""
    if fmt == "YYYY-MM":
        return t.strftime("%Y-%m")
    if fmt == "GGGG-[W]WW":
        year, week, _ = t.isocalendar()
        return f"{year}-W{week:02d}"
    raise ValueError(fmt)


def transform(panel: dict[str, Any], points: list[tuple[float, float]], tz: str) -> dict[str, float]:
    """Grafana's formatTime then groupBy (sum) over one series' (time, value) points."""
    fmt = sum_field = None
    for t in panel.get("transformations", []):
        if t["id"] == "formatTime":
            fmt = t["options"]["outputFormat"]
        elif t["id"] == "groupBy":
            (sum_field,) = [k for k, v in t["options"]["fields"].items() if v["operation"] == "aggregate"]
    assert fmt and sum_field, "expected formatTime + groupBy"
    groups: dict[str, float] = {}
    for ts, v in points:
        key = moment_format(dt.datetime.fromtimestamp(ts, zoneinfo.ZoneInfo(tz)), fmt)
        groups[key] = groups.get(key, 0.0) + v
    return groups
