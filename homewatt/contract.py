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
RESOLUTION = "resolution"  # of a Thanos block: raw, 5m or 1h
STREAM = "stream"  # a block stream as a metric's label (STREAM_LABEL is Query's replica label)
SOURCE = "source"  # where a device's readings come from: mqtt://host:port or tic:<port>
FORMAT = "format"

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
# With several Prometheus shards (homewatt/shards.py), each one's blocks and Ruler carry
# this label too.  Query treats it as a replica label as well: a sensor lives in one shard.
SHARD_LABEL = "homewatt_shard"


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
DEVICE_SOURCE_UP = Metric(
    "homewatt_device_source_up",
    "gauge",
    "1 while the exporter is connected to this MQTT broker or has this TIC port open.",
    (SOURCE,),
)
DEVICE_INFO = Metric(
    "homewatt_device_info",
    "gauge",
    "Always 1: which protocol and source feed this device sensor (join on sensor).",
    (SENSOR, FORMAT, SOURCE),
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
# The native stack's filesystem bucket (stack/bucket.py), served by the runner.
BUCKET_BYTES = Metric(
    "homewatt_bucket_bytes",
    "gauge",
    "Bytes of the bucket's blocks (not marked for deletion), per block stream and resolution.",
    (STREAM, RESOLUTION),
)
BUCKET_BLOCKS = Metric(
    "homewatt_bucket_blocks",
    "gauge",
    "Blocks in the bucket (not marked for deletion), per block stream and resolution.",
    (STREAM, RESOLUTION),
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
    "sensor:elec_energy_joules_total:reading1d": (
        "The energy counter read at each local midnight, J: a day's total is the difference of two."
    ),
}
AVG1M, INC1M, AVG15M, INC15M, READING15M, READING1D = (
    Metric(name, "gauge", text) for name, text in _RULES.items()
)
# For HomewattSensorSilent (rules/homewatt-alerts.rules.yml): when each sensor's newest
# sample was taken, and, only for silent sensors, the seconds since.
LAST_SAMPLE = Metric(
    "sensor:elec_power_watts:timestamp",
    "gauge",
    "When the sensor's newest power (or apparent power) sample was taken, Unix seconds.",
)
SILENT = Metric(
    "sensor:elec_power_watts:silent_seconds",
    "gauge",
    "Seconds since a silent sensor's last power sample, while the other sensors report.",
)
RECORDED = (AVG1M, INC1M, AVG15M, INC15M, READING15M, READING1D, LAST_SAMPLE, SILENT)

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

# The outbox's state, pushed by every run and retry under its own Pushgateway group
# (job=OUTBOX_JOB): read from the outbox directory, so it is right whoever ran last.
OUTBOX_JOB = "partner_job_outbox"
OUTBOX_PENDING = Metric(
    "partner_job_outbox_pending_payloads", "gauge", "Payloads written but not yet landed, per sensor."
)
OUTBOX_OLDEST = Metric(
    "partner_job_outbox_oldest_pending_timestamp_seconds",
    "gauge",
    "When this sensor's oldest pending payload was first written.",
)
OUTBOX_REJECTED = Metric(
    "partner_job_rejected_payloads",
    "gauge",
    "Payloads the partner refused for good, kept in outbox/rejected/ until someone acts.",
)
LAST_RUN = Metric(
    "partner_job_last_run_timestamp_seconds", "gauge", "When the last nightly run wrote its payloads.", ()
)
LAST_RUN_WINDOW_END = Metric(
    "partner_job_last_run_window_end_timestamp_seconds",
    "gauge",
    "The midnight that ended the last nightly run's window.",
    (),
)
OUTBOX = (OUTBOX_PENDING, OUTBOX_OLDEST, OUTBOX_REJECTED, LAST_RUN, LAST_RUN_WINDOW_END)

# The backfill's progress, pushed at its start, after every chunk and at its end
# (job=BACKFILL_JOB): a backfill killed halfway leaves done < planned behind.
BACKFILL_JOB = "homewatt_backfill"
BACKFILL_PLANNED = Metric(
    "homewatt_backfill_chunks_planned",
    "gauge",
    "Chunks (a day of 1 s data, or a span of quarter-hours) the plan holds.",
    (),
)
BACKFILL_DONE = Metric("homewatt_backfill_chunks_done", "gauge", "Chunks the journal records as written.", ())
BACKFILL = (BACKFILL_PLANNED, BACKFILL_DONE)

ALL = (
    POWER,
    ENERGY,
    APPARENT_POWER,
    DEVICE_LAST_SEEN,
    DEVICE_REJECTED,
    DEVICE_SOURCE_UP,
    DEVICE_INFO,
    COMPONENT_RESTARTS,
    COMPONENT_UP,
    COMPONENT_LAST_EXIT,
    BUCKET_BYTES,
    BUCKET_BLOCKS,
    *RECORDED,
    *PUSHED,
    *OUTBOX,
    *BACKFILL,
)
