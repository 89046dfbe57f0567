"""The metric contract: every series name, HELP text and label homewatt's parts agree on.

Dashboards, rules, the nightly job and checks all read these series, so each
name and its HELP text is written here once; the exporter, the backfill, the
partner job's push, the dashboards generator and the tests import it.  Text
files that cannot import Python (prometheus.yml, the rule files) are checked
against it by tests/test_contract.py.

Units are Prometheus base units (W, J, VA, s); dashboards convert to kW / kWh.
"""

from __future__ import annotations

from dataclasses import dataclass

# Time constants, in seconds.  Named for what they are, so that a 900 is never
# mistaken for a stream name or a block size.
SECOND = 1
MINUTE = 60
QUARTER_HOUR = 15 * MINUTE
HOUR = 3600
DAY = 86400
JOULES_PER_KWH = 3.6e6
JOULES_PER_WH = 3600.0

# Labels.
SENSOR = "sensor"
USAGE = "usage"
REASON = "reason"
COMPONENT = "component"

# The exporter's scrape job.  prometheus.yml pins `instance` to the job name so
# that the backfilled history (written with these labels) and the live series
# are one series whichever host the exporter runs on.
EXPORTER_JOB = "homewatt-exporter"
EXPORTER_INSTANCE = "homewatt-exporter"
# The job the nightly export pushes its gauges under (Pushgateway grouping: job + sensor).
PARTNER_JOB = "partner_job"

# The long-term store's two block streams (see homewatt/streams.py).
STREAM_LABEL = "homewatt_stream"
RAW_STREAM = "raw"
QUARTER_STREAM = "quarter"
STREAMS = (RAW_STREAM, QUARTER_STREAM)


@dataclass(frozen=True)
class Metric:
    """One series of the contract: its name as queried, type, HELP text and labels."""

    name: str
    kind: str  # "gauge" or "counter"
    help: str
    labels: tuple[str, ...] = (SENSOR,)

    @property
    def family(self) -> str:
        """The OpenMetrics family name: a counter's samples carry `_total`, its family does not."""
        if self.kind == "counter" and self.name.endswith("_total"):
            return self.name[: -len("_total")]
        return self.name


POWER = Metric("elec_power_watts", "gauge", "Active power drawn by the home now, in watts.")
ENERGY = Metric(
    "elec_energy_joules_total", "counter", "Energy used since the meter's index reading, in joules."
)
APPARENT_POWER = Metric(
    "elec_apparent_power_voltamperes", "gauge", "Apparent power drawn now, in volt-amperes (Linky TIC)."
)
DEVICE_LAST_SEEN = Metric(
    "homewatt_device_last_seen_timestamp_seconds", "gauge", "When a real device last sent a good reading."
)
DEVICE_REJECTED = Metric(
    "homewatt_device_rejected_total",
    "counter",
    "Device readings dropped as bad, by reason.",
    (SENSOR, REASON),
)

# The native stack's runner (stack/status.py): one series per part of the stack.
COMPONENT_RESTARTS = Metric(
    "homewatt_component_restarts_total",
    "counter",
    "Times the stack's supervisor restarted this part after it died.",
    (COMPONENT,),
)
COMPONENT_UP = Metric(
    "homewatt_component_up",
    "gauge",
    "1 while this part of the stack runs, 0 while it waits to restart or was given up on.",
    (COMPONENT,),
)
COMPONENT_LAST_EXIT = Metric(
    "homewatt_component_last_exit_code",
    "gauge",
    "How this part last ended: its exit status, or minus the signal that killed it (-9: SIGKILL).",
    (COMPONENT,),
)

# Recording rules (rules/*.rules.yml), named level:metric:operations; gauges, by sensor.
_RULES = {
    "sensor:elec_power_watts:avg1m": "Mean power over the minute before the sample, W.",
    "sensor:elec_energy_joules:increase1m": "Energy used in the minute before the sample, J.",
    "sensor:elec_power_watts:avg15m": "Mean power over the quarter-hour before the sample, W.",
    "sensor:elec_energy_joules:increase15m": "Energy used in the quarter-hour before the sample, J.",
    "sensor:elec_energy_joules_total:reading15m": (
        "The energy counter read at the quarter-hour, J: a total is the difference of two readings."
    ),
}
AVG1M, INC1M, AVG15M, INC15M, READING15M = (Metric(name, "gauge", text) for name, text in _RULES.items())
RECORDED = (AVG1M, INC1M, AVG15M, INC15M, READING15M)

# Pushed by the nightly job (grouping key: sensor).
USAGE_SHARE = Metric(
    "elec_usage_share_ratio", "gauge", "Partner's share of the window's energy per usage, 0..1.", (USAGE,)
)
USAGE_ENERGY = Metric("elec_usage_energy_joules", "gauge", "Share x the window's energy, J.", (USAGE,))
PARTNER_LAST_SUCCESS = Metric(
    "partner_job_last_success_timestamp_seconds", "gauge", "When this sensor's last breakdown landed.", ()
)
PARTNER_WINDOW_START = Metric(
    "partner_job_window_start_timestamp_seconds", "gauge", "Start of the window the breakdown covers.", ()
)
PARTNER_WINDOW_END = Metric(
    "partner_job_window_end_timestamp_seconds", "gauge", "End of the window the breakdown covers.", ()
)
PUSHED = (USAGE_SHARE, USAGE_ENERGY, PARTNER_WINDOW_START, PARTNER_WINDOW_END, PARTNER_LAST_SUCCESS)

ALL = (
    POWER,
    ENERGY,
    APPARENT_POWER,
    DEVICE_LAST_SEEN,
    DEVICE_REJECTED,
    COMPONENT_RESTARTS,
    COMPONENT_UP,
    COMPONENT_LAST_EXIT,
    *RECORDED,
    *PUSHED,
)
