"""homewatt's Grafana dashboards as code; `python grafana/dashboards.py` writes their JSON.

The committed JSON under grafana/dashboards/ is what Grafana provisions; a
test regenerates it and requires the same bytes, and another runs every
panel's queries against a real Prometheus with the variables substituted as
Grafana would.

PromQL notes the queries rely on (Prometheus 2.42):
- range selectors include both ends, so a window ending on a quarter-hour
  would hold two backfilled quarter-hour samples; `offset -…1ms` makes it
  (t, t + d] instead;
- a query_range value at t is drawn at t: bars are computed for [t, t + step)
  (negative offsets) so each sits on the period it belongs to; Grafana aligns
  the steps in the dashboard's timezone (Europe/Paris) with the UTC offset at the
  range's end, so a 1d step starts at local midnight in that season and at 01:00
  or 23:00 in the other: the day bars read the daily reading instead of a fixed
  24 h (homewatt/localday.py);
- panel time overrides give calendar periods: `now/M` with a time shift of
  `1M` is last month up to the same point, `1M/M` the whole of last month;
- the counter before the raw window exists only every 15 minutes, beyond the
  5-minute lookback: readings use last_over_time(…[30m]) (LOOKBACK below).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from grafana_foundation_sdk.builders import barchart, piechart, prometheus, stat, table, timeseries
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import prometheus as pm

from homewatt.contract import (
    APPARENT_POWER,
    AVG15M,
    BACKFILL_DONE,
    BACKFILL_JOB,
    BACKFILL_PLANNED,
    BUCKET_BLOCKS,
    BUCKET_BYTES,
    DEVICE_REJECTED,
    DEVICE_SOURCE_UP,
    ENERGY,
    EXPORTER_JOB,
    INC15M,
    LAST_RUN,
    LAST_RUN_WINDOW_END,
    OUTBOX_PENDING,
    OUTBOX_REJECTED,
    PARTNER_LAST_SUCCESS,
    PARTNER_WINDOW_END,
    PARTNER_WINDOW_START,
    POWER,
    READING1D,
    READING15M,
    SILENT,
    USAGE_ENERGY,
    USAGE_SHARE,
    Metric,
)

OUT = Path(__file__).resolve().parent / "dashboards"
LIVE_DS = common.DataSourceRef(type_val="prometheus", uid="homewatt-prometheus")
HISTORY_DS = common.DataSourceRef(type_val="prometheus", uid="homewatt-history")
TZ = "Europe/Paris"

S = '{sensor="$sensor"}'
COUNTER = f"{ENERGY.name}{S}"  # the 1 s counter: Live's today/yesterday
READING = f"{READING15M.name}{S}"  # the counter read every quarter-hour: every History total
DAILY = f"{READING1D.name}{S}"  # the counter read at each local midnight: the day bars
# How far back a reading is looked for: readings come every 15 minutes, but right after
# the first start the last backfilled one and the Ruler's first can be up to 30 minutes
# apart.  last_over_time takes the newest in the window, so a wider one changes nothing else.
LOOKBACK = "30m"


def promql_duration(seconds: int) -> str:
    """A PromQL duration such as 6d23h59m59s (or -1s): offsets are literals, never sums."""
    sign, left = ("-", -seconds) if seconds < 0 else ("", seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if left >= size:
            parts.append(f"{left // size}{unit}")
            left %= size
    return sign + ("".join(parts) or "0s")


def reading(at: str, back: int = 0, end: bool = False) -> str:
    """The counter's latest quarter-hour reading at an instant, `back` seconds earlier.

    A period's end comes from Grafana as its last second (23:59:59 for a whole
    day): `end` reads one second later, the reading on the boundary itself, so a
    whole period's total is the counter's increase over all of it.
    """
    shift = back - (1 if end else 0)
    offset = f" offset {promql_duration(shift)}" if shift else ""
    return f"last_over_time({READING}[{LOOKBACK}] @ {at}{offset})"


FROM, TO = "${__from:date:seconds}", "${__to:date:seconds}"
PERIOD_KWH = f"({reading(TO, end=True)} - {reading(FROM)}) / 3.6e6"


def query(
    expr: str, legend: str = "", instant: bool = False, interval: str | None = None
) -> prometheus.Dataquery:
    q = prometheus.Dataquery().expr(expr).legend_format(legend or "__auto")
    q = q.instant() if instant else q.range()
    if interval:
        q = q.interval(interval)
    return q


def sensor_variable(ds: common.DataSourceRef, metric: str) -> db.QueryVariable:
    return (
        db.QueryVariable("sensor")
        .label("Sensor")
        .datasource(ds)
        .query(f"label_values({metric}, sensor)")
        .refresh(dm.VariableRefresh.ON_DASHBOARD_LOAD)
    )


def stat_panel(
    ds: common.DataSourceRef,
    title: str,
    expr: str,
    unit: str,
    decimals: int,
    time_from: str | None = None,
    time_shift: str | None = None,
    h: int = 4,
    w: int = 4,
) -> stat.Panel:
    """One number from an instant query, over the panel's own calendar period if given."""
    p = stat.Panel().title(title).datasource(ds).with_target(query(expr, instant=True))
    p = p.unit(unit).decimals(decimals)
    if time_from:
        p = p.time_from(time_from)
    if time_shift:
        p = p.time_shift(time_shift)
    return p.height(h).span(w)


def live() -> db.Dashboard:
    today = f"({COUNTER} - {COUNTER} @ {FROM}) / 3.6e6"
    yesterday = f"({COUNTER} offset 1d - {COUNTER} @ {FROM} offset 1d) / 3.6e6"
    vs_yesterday = f"{today} / ({yesterday}) - 1"
    return (
        db.Dashboard("homewatt — Live")
        .uid("homewatt-live")
        .tags(["homewatt"])
        .timezone(TZ)
        .time("now-15m", "now")
        .refresh("1s")
        .timepicker(db.TimePicker().refresh_intervals(["1s", "5s", "10s", "30s", "1m"]))
        # The counter, not the power: a Linky's active power comes minutes after its first frame.
        .with_variable(sensor_variable(LIVE_DS, ENERGY.name))
        .with_panel(stat_panel(LIVE_DS, "Power now", f"{POWER.name}{S} / 1000", "kwatt", 2, h=6, w=6))
        .with_panel(
            stat_panel(LIVE_DS, "Energy today", today, "kwatth", 2, "now/d", h=6, w=6).description(
                "Counter now minus counter at local midnight."
            )
        )
        .with_panel(stat_panel(LIVE_DS, "Same time yesterday", yesterday, "kwatth", 2, "now/d", h=6, w=6))
        .with_panel(
            stat_panel(LIVE_DS, "Today vs yesterday", vs_yesterday, "percentunit", 1, "now/d", h=6, w=6)
        )
        .with_panel(
            timeseries.Panel()
            .title("Power, last 15 minutes, every second")
            .datasource(LIVE_DS)
            .with_target(query(f"{POWER.name}{S} / 1000", "{{sensor}}", interval="1s"))
            .interval("1s")
            .unit("kwatt")
            .time_from("now-15m")
            .height(10)
            .span(24)
        )
    )


def history() -> db.Dashboard:
    step_window = "[$__interval] offset -${__interval}1ms"  # (t, t + step]: the step starting at t
    quarter_kwh = f"sum_over_time({INC15M.name}{S}{step_window}) / 3.6e6"
    # (t - step, t] in Prometheus 2.42 and 3 alike: Thanos Query runs the newer engine, whose
    # range selectors leave out their start; offset -1ms makes 2.42's closed window match.
    mean_kw = f"avg_over_time({AVG15M.name}{S}[$__interval] offset -1ms) / 1000"
    # The bar at step t: the daily reading at the last local midnight at or before t + step
    # minus the one at or before t.  Steps on local midnights give calendar days, 23 h and
    # 25 h ones included; Grafana aligns every step with the UTC offset at the range's end,
    # so in the other DST season they sit at 01:00 (still that day) or 23:00 (the day
    # before, whose bar it then is).  The bars telescope, so the week and month sums stay
    # exact whatever the phase; docs/limits.md has the two days a summer-opened view
    # draws oddly.  Both windows end 15 min later (a standalone Prometheus stamps the
    # reading up to 15 min after midnight); the end's window, (t + 15m, t + step + 15m],
    # is empty for a bar not over yet, as before.  A window's start is never a reading,
    # so Prometheus 2.42 (closed) and Thanos Query (start left out) agree.
    day_kwh = (
        f"(last_over_time({DAILY}[$__interval] offset -${{__interval}}15m)"
        f" - last_over_time({DAILY}[25h] offset -15m)) / 3.6e6"
    )
    d = (
        db.Dashboard("homewatt — History")
        .uid("homewatt-history")
        .tags(["homewatt"])
        .timezone(TZ)
        .week_start("monday")
        .time("now-30d", "now")
        .with_variable(sensor_variable(HISTORY_DS, READING15M.name))
        .with_panel(
            timeseries.Panel()
            .title("Mean power (kW)")
            .description("15-minute series averaged over each step; the step grows with the range.")
            .datasource(HISTORY_DS)
            .with_target(query(mean_kw, "{{sensor}}"))
            .interval("15m")
            .max_data_points(1000)
            .unit("kwatt")
            .height(8)
            .span(24)
        )
        .with_panel(
            timeseries.Panel()
            .title("Energy per step (kWh), drawn at the step's start")
            .datasource(HISTORY_DS)
            .with_target(query(quarter_kwh, "{{sensor}}"))
            .interval("15m")
            .max_data_points(1000)
            .unit("kwatth")
            .draw_style(common.GraphDrawStyle.BARS)
            .height(8)
            .span(24)
        )
        .with_panel(
            timeseries.Panel()
            .title("Energy per day (kWh), each bar on its local day")
            .datasource(HISTORY_DS)
            .with_target(query(day_kwh, "{{sensor}}"))
            .interval("1d")
            .max_data_points(1200)
            .unit("kwatth")
            .draw_style(common.GraphDrawStyle.BARS)
            .height(8)
            .span(24)
        )
    )
    # Weeks and months have no fixed step: the daily bars are summed per local week /
    # month by Grafana transformations and drawn as one bar per period.
    for title, fmt in (("Energy per week (kWh)", "GGGG-[W]WW"), ("Energy per month (kWh)", "YYYY-MM")):
        d = d.with_panel(
            barchart.Panel()
            .title(title)
            .datasource(HISTORY_DS)
            .with_target(query(day_kwh, "kWh"))
            .interval("1d")
            .max_data_points(2000)
            .unit("kwatth")
            .with_transformation(
                dm.DataTransformerConfig(
                    id_val="formatTime",
                    options={"timeField": "Time", "outputFormat": fmt, "timezone": TZ, "useTimezone": True},
                )
            )
            .with_transformation(
                dm.DataTransformerConfig(
                    id_val="groupBy",
                    options={
                        "fields": {
                            "Time": {"operation": "groupby", "aggregations": []},
                            "kWh": {"operation": "aggregate", "aggregations": ["sum"]},
                        }
                    },
                )
            )
            .height(8)
            .span(12)
        )
    # This period so far, the previous one to the same point, and the same period last year.
    for name, unit, offset in (("week", "w", "1w"), ("month", "M", "1M"), ("year", "y", "1y")):
        for title, shift in (
            (f"This {name} so far", None),
            (f"Last {name}, same point", offset),
            (f"Same {name} last year", "1y"),
            (f"Last {name}, whole", f"1{unit}/{unit}"),
        ):
            d = d.with_panel(stat_panel(HISTORY_DS, title, PERIOD_KWH, "kwatth", 1, f"now/{unit}", shift))
        # % needs both periods in one query, so a fixed offset: one week back for weeks,
        # 52 weeks (same weekdays) for "last year"; months have no fixed length, so
        # there is no "% vs last month" (its kWh are shown above).
        now_kwh = f"({reading(TO, end=True)} - {reading(FROM)})"
        for fixed, versus in ((7 * 86400, "last week"), (52 * 7 * 86400, "the same days last year")):
            if fixed == 7 * 86400 and unit != "w":
                continue
            prev = f"({reading(TO, fixed, end=True)} - {reading(FROM, fixed)})"
            ratio = f"{now_kwh} / {prev} - 1"
            title = f"This {name} vs {versus}"
            d = d.with_panel(stat_panel(HISTORY_DS, title, ratio, "percentunit", 1, f"now/{unit}"))
    return d


def latest(panel, title: str, expr: str, unit: str, legend: str = "", h: int = 4, w: int = 8):
    """A Usage panel: always the latest breakdown (instant query now), whatever range is picked."""
    return (
        panel.title(title)
        .datasource(LIVE_DS)
        .time_from("now-5m")
        .hide_time_override(True)
        .with_target(query(expr, legend, instant=True))
        .unit(unit)
        .height(h)
        .span(w)
    )


def usage() -> db.Dashboard:
    none_yet = "No breakdown yet: the partner's first answer for this sensor has not landed."

    def stamp(metric: Metric) -> str:
        return f"{metric.name}{S} * 1000"

    return (
        db.Dashboard("homewatt — Usage breakdown")
        .uid("homewatt-usage")
        .tags(["homewatt"])
        .timezone(TZ)
        .time("now-1h", "now")
        .with_variable(sensor_variable(LIVE_DS, POWER.name))
        .with_panel(
            latest(
                piechart.Panel().description(none_yet).no_value(none_yet),
                "Partner's breakdown (share of the window's energy)",
                f"{USAGE_SHARE.name}{S}",
                "percentunit",
                "{{usage}}",
                h=10,
                w=12,
            )
        )
        .with_panel(
            latest(
                table.Panel().no_value(none_yet),
                "kWh per usage over the window",
                f"{USAGE_ENERGY.name}{S} / 3.6e6",
                "kwatth",
                "{{usage}}",
                h=10,
                w=12,
            )
        )
        .with_panel(latest(stat.Panel(), "Window start", stamp(PARTNER_WINDOW_START), "dateTimeAsLocal"))
        .with_panel(latest(stat.Panel(), "Window end", stamp(PARTNER_WINDOW_END), "dateTimeAsLocal"))
        .with_panel(
            latest(
                stat.Panel().description("When the breakdown was pushed.").no_value("not yet"),
                "Landed",
                stamp(PARTNER_LAST_SUCCESS),
                "dateTimeFromNow",
            )
        )
    )


def fleet_health() -> db.Dashboard:
    """The operator's view: is every home reporting, did last night's export land, is the
    history complete, is Thanos keeping up, what fires now.  Every query is run against a
    real stack by tests/test_alerts_e2e.py."""
    reporting = f"({POWER.name} or {APPARENT_POWER.name})"
    success = PARTNER_LAST_SUCCESS.name
    backfill_push = f'push_time_seconds{{job="{BACKFILL_JOB}"}}'

    def per_sensor_or_zero(metric: Metric) -> str:
        """0 for every sensor with a breakdown and nothing counted: a table row, not a gap."""
        return f"{metric.name} or on (sensor) 0 * {success}"

    def series(title: str, unit: str, *targets: tuple[str, str], w: int = 8) -> timeseries.Panel:
        p = timeseries.Panel().title(title).datasource(LIVE_DS).unit(unit).height(7).span(w)
        for expr, legend in targets:
            p = p.with_target(query(expr, legend))
        return p

    def instant_table(
        title: str, ds: common.DataSourceRef, *exprs: str, none: str, w: int = 12
    ) -> table.Panel:
        p = table.Panel().title(title).datasource(ds).no_value(none).height(7).span(w)
        for expr in exprs:
            p = p.with_target(query(expr, instant=True).format(pm.PromQueryFormat.TABLE))
        if len(exprs) > 1:  # one row per sensor, a column per query
            p = p.with_transformation(dm.DataTransformerConfig(id_val="merge", options={}))
        return p

    return (
        db.Dashboard("homewatt — Fleet health")
        .uid("homewatt-fleet-health")
        .tags(["homewatt"])
        .timezone(TZ)
        .time("now-6h", "now")
        .refresh("30s")
        # The live path
        .with_panel(
            stat_panel(LIVE_DS, "Sensors reporting now", f"count(group by (sensor) {reporting})", "none", 0)
        )
        .with_panel(stat_panel(LIVE_DS, "Silent sensors", f"count({SILENT.name}) or vector(0)", "none", 0))
        .with_panel(
            stat_panel(
                LIVE_DS,
                "Live lag",
                f"time() - max(timestamp({POWER.name}))",
                "s",
                1,
            ).description("Age of the newest power sample in Prometheus: about 1 s when all is well.")
        )
        .with_panel(
            stat_panel(LIVE_DS, "Alerts firing", 'count(ALERTS{alertstate="firing"}) or vector(0)', "none", 0)
        )
        .with_panel(
            stat_panel(
                LIVE_DS, "Payloads pending", f"sum({OUTBOX_PENDING.name}) or vector(0)", "none", 0
            ).description("Nightly payloads in the outbox, not landed yet (retried every 5 minutes).")
        )
        .with_panel(
            stat_panel(LIVE_DS, "Payloads refused", f"sum({OUTBOX_REJECTED.name}) or vector(0)", "none", 0)
        )
        .with_panel(
            instant_table(
                "Silent sensors: seconds since their last reading",
                LIVE_DS,
                SILENT.name,
                none="None: every sensor reports.",
                w=12,
            )
        )
        .with_panel(
            instant_table(
                "Device sources (1 = connected)",
                LIVE_DS,
                DEVICE_SOURCE_UP.name,
                none="No real devices in this fleet.",
                w=12,
            )
        )
        .with_panel(series("Live lag (s)", "s", (f"time() - max(timestamp({POWER.name}))", "lag")))
        .with_panel(
            series(
                "Exporter scrape duration (s)",
                "s",
                (f'scrape_duration_seconds{{job="{EXPORTER_JOB}"}}', "scrape"),
            )
        )
        .with_panel(
            series(
                "Samples ingested per second",
                "short",
                ('rate(prometheus_tsdb_head_samples_appended_total{job="prometheus"}[1m])', "Prometheus"),
            )
        )
        .with_panel(
            series(
                "Device readings rejected per minute",
                "short",
                (f"sum by (sensor) (rate({DEVICE_REJECTED.name}[5m])) * 60", "{{sensor}}"),
                w=12,
            )
        )
        # The nightly export
        .with_panel(
            stat_panel(LIVE_DS, "Last nightly run", f"{LAST_RUN.name} * 1000", "dateTimeFromNow", 0, w=6)
        )
        .with_panel(
            stat_panel(
                LIVE_DS, "Its window ended", f"{LAST_RUN_WINDOW_END.name} * 1000", "dateTimeAsLocal", 0, w=6
            )
        )
        .with_panel(
            instant_table(
                "Each sensor: seconds since its breakdown landed, payloads pending, refused",
                LIVE_DS,
                f"time() - {success}",
                per_sensor_or_zero(OUTBOX_PENDING),
                per_sensor_or_zero(OUTBOX_REJECTED),
                none="No breakdown has landed yet.",
                w=24,
            )
        )
        # The history
        .with_panel(
            stat_panel(
                LIVE_DS,
                "Backfill chunks written",
                f"{BACKFILL_DONE.name} / {BACKFILL_PLANNED.name}",
                "percentunit",
                1,
                w=6,
            )
        )
        .with_panel(
            stat_panel(
                LIVE_DS,
                "Backfill chunks missing",
                f"{BACKFILL_PLANNED.name} - {BACKFILL_DONE.name}",
                "none",
                0,
                w=6,
            )
        )
        .with_panel(
            stat_panel(
                LIVE_DS, "Backfill last progress", f"{backfill_push} * 1000", "dateTimeFromNow", 0, w=6
            )
        )
        .with_panel(
            stat_panel(
                LIVE_DS, "Compactors halted", "sum(thanos_compact_halted) or vector(0)", "none", 0, w=6
            )
        )
        # Thanos
        .with_panel(
            series(
                "Compactor backlog: compactions and blocks to downsample",
                "short",
                ("thanos_compact_todo_compactions", "compactions {{instance}}"),
                ("thanos_compact_todo_downsample_blocks", "to downsample {{instance}}"),
            )
        )
        .with_panel(
            series(
                "Compactor iterations per hour",
                "short",
                ("increase(thanos_compact_iterations_total[1h])", "{{instance}}"),
            )
        )
        .with_panel(
            series(
                "Bucket size by stream and resolution",
                "bytes",
                (BUCKET_BYTES.name, "{{stream}} {{resolution}}"),
                (f"sum({BUCKET_BLOCKS.name})", "blocks"),
            )
        )
        .with_panel(
            instant_table(
                "Alerts firing now (Prometheus and the Thanos Ruler)",
                HISTORY_DS,
                'ALERTS{alertstate="firing"}',
                none="No alert fires.",
                w=24,
            )
        )
    )


DASHBOARDS = {
    "live.json": live,
    "history.json": history,
    "usage.json": usage,
    "fleet-health.json": fleet_health,
}


def render(builder: db.Dashboard) -> str:
    return json.dumps(builder.build(), cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def write(out: Path = OUT) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, make in DASHBOARDS.items():
        path = out / name
        path.write_text(render(make()))
        paths.append(path)
    return paths


if __name__ == "__main__":
    for p in write(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT):
        print(p)
