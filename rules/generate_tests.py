"""Write rules/tests/unusual-consumption.test.yml, the promtool test of HomewattUnusualConsumption,
from the load model.

Why generated: the alert compares a home's lowest quarter-hour of the last 48 hours with
the same 48 hours of the four weeks before, so its test needs five weeks of
quarter-hours per home.  Numbers typed by hand would test a home made up to suit the
rule; these are the default homes' own quarter-hours, as the backfill writes them
(`sensor:elec_power_watts:avg15m`, the quarter's energy over 900 s with 3
decimals), across the end of DST.  The script also computes what the rule must
answer at every quarter-hour (PromQL's min, quantile and range bounds, replicated)
and refuses to write a test that would pass for the wrong reason: a normal home
firing anywhere in the span, or a fault that fires before or not when expected.

    .venv/bin/python rules/generate_tests.py [OUT]   # default: rules/tests/unusual-consumption.test.yml

Deterministic: the model is a pure function of the fleet file and the second.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from homewatt import loadmodel
from homewatt.contract import AVG15M, DAY, HOUR, MINUTE, QUARTER_HOUR, SENSOR
from homewatt.fleet import Sensor, load_fleet

HERE = Path(__file__).resolve().parent
RULE_FILE = HERE / "homewatt-usage-alerts.rules.yml"
OUT = HERE / "tests" / "unusual-consumption.test.yml"
ALERT = "HomewattUnusualConsumption"

# What the rule says (checked against its text by `rule_constants`).
WINDOW = 48 * HOUR
WEEK = 7 * DAY
REFERENCE_WEEKS = (1, 2, 3, 4)
THRESHOLD_W = 2000.0
MIN_SAMPLES = 144
FOR = HOUR
SEVERITY = "info"


def _utc(text: str) -> int:
    return int(dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp())


# Test time 0 is this instant: a Thursday 00:00 UTC, like 1970-01-01, and a whole
# number of weeks after it, so the shift keeps weekdays and UTC times of day.
START = _utc("2026-09-17T00:00:00")
END = _utc("2026-11-01T00:00:00")
DST_END = _utc("2026-10-25T01:00:00")  # Europe/Paris: 03:00 CEST becomes 02:00 CET
NORMAL_HOMES = ("s-001", "s-004")  # convectors and a water heater; the poorly insulated house
MISSING = ("s-004", _utc("2026-10-20T03:00:00"))  # a reading the meter missed (a night quarter)
FAULT_HOME = "s-001"
FAULT_SENSOR = "s-fault"
FAULT_AT = _utc("2026-10-27T09:00:00")  # its 2.4 kW water heater stays on from here
NORMAL_EVALS = tuple(
    _utc(t)
    for t in (
        "2026-10-17T00:00:00",  # the first instant with all four reference weeks
        "2026-10-21T06:00:00",
        "2026-10-25T00:45:00",  # the last quarter-hour of summer time
        "2026-10-25T01:00:00",  # DST ends
        "2026-10-25T12:00:00",  # the 25-hour local day
        "2026-10-26T18:00:00",  # a 48 h window holding all of it
        "2026-11-01T00:00:00",  # the span's last reading
    )
)
assert START % WEEK == 0 and all((t - START) % QUARTER_HOUR == 0 for t in NORMAL_EVALS)


def rule_constants() -> dict[str, str]:
    """The alert as the rule file writes it, after checking that it still says what this
    script replicates (a changed rule must change this script too)."""
    doc = yaml.safe_load(RULE_FILE.read_text())
    (group,) = doc["groups"]
    (rule,) = [r for r in group["rules"] if r.get("alert") == ALERT]
    expr = " ".join(rule["expr"].split())
    expected = [
        f"min_over_time({AVG15M.name}[{WINDOW // HOUR}h])",
        *(f"[{WINDOW // HOUR}h] offset {w}w" for w in REFERENCE_WEEKS),
        "quantile by (sensor) (0.5,",
        f") > {THRESHOLD_W:.0f} and on (sensor)",
        f">= {MIN_SAMPLES}",
    ]
    missing = [text for text in expected if text not in expr]
    if missing or rule["for"] != f"{FOR // HOUR}h" or rule["labels"] != {"severity": SEVERITY}:
        raise SystemExit(f"{RULE_FILE.name}: {ALERT} no longer matches this generator: {missing}")
    if group["interval"] != f"{QUARTER_HOUR // MINUTE}m":
        raise SystemExit(f"{RULE_FILE.name}: the group's interval is not 15m")
    return {k: str(v) for k, v in rule["annotations"].items()}


def model_quarters(sensors: Sequence[Sensor], fault_at: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Joules of every quarter-hour [T - 15 min, T), T = START..END, per sensor: (all usages,
    the water heater from `fault_at` on, seconds from `fault_at` on); (S, Q), (S, Q), (Q,).

    One model call per UTC day for all the sensors: the model is vectorised over homes.
    """
    total, heater, after = [], [], []
    for a in range(START - QUARTER_HOUR, END, DAY):
        seconds = np.arange(a, min(a + DAY, END), dtype=np.int64)
        parts = loadmodel.components(tuple(sensors), seconds)
        stuck = seconds >= fault_at

        def per_quarter(x: np.ndarray) -> np.ndarray:
            return x.reshape(*x.shape[:-1], -1, QUARTER_HOUR).sum(axis=-1)

        total.append(per_quarter(functools.reduce(np.add, parts.values())))
        heater.append(per_quarter(np.where(stuck, parts["water_heater"], 0)))
        after.append(per_quarter(stuck.astype(np.int64)))
    return np.concatenate(total, axis=1), np.concatenate(heater, axis=1), np.concatenate(after)


def avg15m(joules: np.ndarray) -> np.ndarray:
    """The quarter's mean power as the backfill writes it (3 decimals, half up, as
    backfill/generate.py) and Prometheus parses it back."""
    milli = (joules * 2000 + QUARTER_HOUR) // (2 * QUARTER_HOUR)
    return milli / 1000.0


def instants() -> np.ndarray:
    return np.arange(START, END + 1, QUARTER_HOUR, dtype=np.int64)


def _quantile(q: float, values: list[float]) -> float:
    """PromQL's quantile aggregation (promql/quantile.go), float for float."""
    values = sorted(values)
    rank = q * (len(values) - 1)
    lower = max(0, int(np.floor(rank)))
    upper = min(len(values) - 1, lower + 1)
    weight = rank - np.floor(rank)
    return values[lower] * (1 - weight) + values[upper] * weight


@dataclass(frozen=True)
class Eval:
    """What the alert's expression sees at one instant for one series."""

    floor: float | None  # min_over_time(avg15m[48h]), W
    norm: float | None  # the median of the reference weeks' floors, W
    samples: int  # count_over_time(avg15m[48h])

    @property
    def excess(self) -> float | None:
        return None if self.floor is None or self.norm is None else self.floor - self.norm

    @property
    def active(self) -> bool:
        """The expression returns this series (the alert is pending or firing)."""
        return self.excess is not None and self.excess > THRESHOLD_W and self.samples >= MIN_SAMPLES


class Series:
    """One input series (NaN: a missed reading) and the expression's view of it.

    A range selector ending at t holds the samples in [t - 48 h, t], both ends included
    (Prometheus 2.42): 193 quarter-hours, fewer near the series' start.
    """

    def __init__(self, watts: np.ndarray):
        self.watts = watts
        span = WINDOW // QUARTER_HOUR + 1
        padded = np.concatenate([np.full(span - 1, np.nan), watts])
        windows = np.lib.stride_tricks.sliding_window_view(padded, span)
        self.count = (~np.isnan(windows)).sum(axis=1)
        self.floor = np.min(np.where(np.isnan(windows), np.inf, windows), axis=1)

    def at(self, t: int) -> Eval:
        k = (t - START) // QUARTER_HOUR
        refs = [k - w * WEEK // QUARTER_HOUR for w in REFERENCE_WEEKS]
        floors = [float(self.floor[r]) for r in refs if r >= 0 and self.count[r]]
        return Eval(
            floor=float(self.floor[k]) if self.count[k] else None,
            norm=_quantile(0.5, floors) if floors else None,
            samples=int(self.count[k]),
        )


def humanize(v: float) -> str:
    """Prometheus's `humanize` template function for |v| >= 1 (template/template.go)."""
    prefix = ""
    for p in ("k", "M", "G", "T", "P", "E", "Z", "Y"):
        if abs(v) < 1000:
            break
        prefix, v = p, v / 1000
    return f"{v:.4g}{prefix}"


def expand_annotations(templates: dict[str, str], sensor: str, e: Eval) -> dict[str, str]:
    """The rule's annotations as Prometheus expands them for `sensor` (value = the excess;
    the description's query = the floor)."""
    assert e.floor is not None and e.excess is not None
    out = {}
    for key, text in templates.items():
        text = re.sub(r"\{\{ with printf .*?\{\{ end \}\}", humanize(e.floor) + "W", text)
        text = text.replace("{{ $labels.sensor }}", sensor)
        text = text.replace("{{ $value | humanize }}", humanize(e.excess))
        if "{{" in text:
            raise SystemExit(f"{RULE_FILE.name}: annotation {key} has a template this script cannot expand")
        out[key] = text
    return out


def duration(seconds: int) -> str:
    """A test time as promtool reads it (e.g. 30d6h15m)."""
    d, rest = divmod(seconds, DAY)
    h, rest = divmod(rest, HOUR)
    m = rest // MINUTE
    return "".join(f"{n}{u}" for n, u in ((d, "d"), (h, "h"), (m, "m")) if n) or "0m"


def when(t: int) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def values_text(watts: np.ndarray) -> str:
    """promtool's values, one day of quarter-hours a line (a folded scalar: the lines join
    with spaces); `_` is a missed reading."""
    words = ["_" if np.isnan(v) else f"{v:.3f}" for v in watts]
    lines = [" ".join(words[i : i + 96]) for i in range(0, len(words), 96)]
    return "\n".join("          " + line for line in lines)


def series_block(sensor: str, watts: np.ndarray) -> str:
    return (
        f"      - series: '{AVG15M.name}{{{SENSOR}=\"{sensor}\"}}'\n"
        f"        values: >-\n{values_text(watts)}\n"
    )


def alert_tests(cases: Sequence[tuple[int, list[dict[str, object]]]]) -> str:
    body = [
        {"eval_time": duration(t - START), "alertname": ALERT, "exp_alerts": alerts} for t, alerts in cases
    ]
    text = yaml.safe_dump({"alert_rule_test": body}, sort_keys=False, width=10_000, allow_unicode=True)
    return "".join("    " + line + "\n" for line in text.splitlines())


def render() -> str:
    """The whole test file."""
    templates = rule_constants()
    fleet = load_fleet()
    ts = instants()
    home = fleet.get(FAULT_HOME)
    assert home.water_heater is not None and FAULT_HOME in NORMAL_HOMES
    joules, heater, after = model_quarters([fleet.get(sid) for sid in NORMAL_HOMES], FAULT_AT)
    watts = {sid: avg15m(joules[i]) for i, sid in enumerate(NORMAL_HOMES)}
    i = NORMAL_HOMES.index(FAULT_HOME)
    wh_w = home.water_heater.power_w
    fault = Series(avg15m(joules[i] - heater[i] + wh_w * after))
    missing_sensor, missing_at = MISSING
    watts[missing_sensor][ts == missing_at] = np.nan
    normal = {sid: Series(w) for sid, w in watts.items()}

    # Every quarter-hour the alert could see (from the first with a norm): no normal home
    # is ever active, so the few instants promtool checks are not picked to pass.
    first_norm = START + WEEK + WINDOW
    worst: dict[str, tuple[float, int]] = {}
    for sid, series in normal.items():
        for t in ts[ts >= first_norm]:
            e = series.at(int(t))
            if e.active:
                raise SystemExit(f"{sid} is active at {when(int(t))}: the rule fires on normal data")
            if e.excess is not None and e.excess > worst.get(sid, (-np.inf, 0))[0]:
                worst[sid] = (e.excess, int(t))
    # The fault: active from `onset` on, and firing `FOR` later.
    active = [int(t) for t in ts[ts >= FAULT_AT] if fault.at(int(t)).active]
    if not active:
        raise SystemExit("the injected fault never makes the alert active")
    onset = active[0]
    fires = onset + FOR
    if any(fault.at(int(t)).active for t in ts[(ts >= first_norm) & (ts < FAULT_AT)]):
        raise SystemExit("s-fault is active before its fault")
    if not all(fault.at(int(t)).active for t in ts[(ts >= onset) & (ts <= END)]):
        raise SystemExit("the fault's alert flaps after its onset")
    if fires + HOUR > END:
        raise SystemExit("the span ends before the fault's alert has fired for an hour")

    def expected(t: int) -> list[dict[str, object]]:
        """Only s-fault, and only once its `for` has run."""
        if t < fires:
            return []
        return [
            {
                "exp_labels": {SENSOR: FAULT_SENSOR, "severity": SEVERITY},
                "exp_annotations": expand_annotations(templates, FAULT_SENSOR, fault.at(t)),
            }
        ]

    # The normal homes' instants, each home's closest call (the instant its floor is
    # highest above its norm), and the fault's steps; one group, so s-fault and its
    # untouched twin s-001 are evaluated side by side.
    fault_steps = (FAULT_AT - QUARTER_HOUR, onset - QUARTER_HOUR, onset, fires - QUARTER_HOUR, fires, END)
    cases = sorted({*NORMAL_EVALS, *(t for _, t in worst.values()), *fault_steps})
    onset_eval = fault.at(onset)
    before = fault.at(onset - QUARTER_HOUR)
    assert onset_eval.excess is not None and before.excess is not None
    worst_text = "\n".join(
        f"#      {sid}: {excess / 1000:.2f} kW at {when(t)} = {duration(t - START)}"
        for sid, (excess, t) in sorted(worst.items())
    )

    def d(t: int) -> str:
        return duration(t - START)

    header = f"""\
# GENERATED by rules/generate_tests.py from the load model: do not edit, run
#   .venv/bin/python rules/generate_tests.py
# promtool test rules for {ALERT} (rules/homewatt-usage-alerts.rules.yml).
#
# Input: sensor:elec_power_watts:avg15m every quarter-hour from {when(START)}
# to {when(END)}, as the backfill writes it (the quarter's joules over 900 s).
# Test time = model time - {START} s: test time 0 is {when(START)}, a Thursday
# like 1970-01-01 and {START // WEEK} whole weeks after it, so weekdays and UTC times of day
# are kept (the rule's offsets are whole weeks).  DST ends at {when(DST_END)}
# = test time {duration(DST_END - START)}.
#
# - {" and ".join(NORMAL_HOMES)}: default homes as the model makes them, with one missed reading
#   ({MISSING[0]} at {when(MISSING[1])} = {duration(MISSING[1] - START)}).  Never an alert: before, at and
#   after the end of DST.  The generator checked every quarter-hour from {duration(first_norm - START)} on
#   (a first reference week), not only the instants below.  Each home's largest excess
#   of the floor over its norm, against the {THRESHOLD_W / 1000:.0f} kW threshold (evaluated below):
{worst_text}
# - {FAULT_SENSOR}: {FAULT_HOME} whose {wh_w} W water heater stays on from {when(FAULT_AT)}
#   = {d(FAULT_AT)}.  At {d(onset - QUARTER_HOUR)} its 48 h window still holds a quarter-hour
#   from before the fault (floor {before.floor:.0f} W, {before.excess:.0f} W above the norm);
#   at {d(onset)} none (floor {onset_eval.floor:.0f} W, {onset_eval.excess:.0f} W above): pending.
#   Quiet one evaluation before the {FOR // MINUTE} min `for` ends ({d(fires - QUARTER_HOUR)}),
#   firing at {d(fires)}, {(fires - FAULT_AT) / HOUR:g} h after the fault began, and still at the end.
rule_files:
  - ../homewatt-usage-alerts.rules.yml

evaluation_interval: 15m

tests:
  - interval: 15m
    input_series:
"""
    inputs = {**normal, FAULT_SENSOR: fault}
    body = "".join(series_block(sid, x.watts) for sid, x in inputs.items())
    return header + body + alert_tests([(t, expected(t)) for t in cases])


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else OUT
    text = render()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
