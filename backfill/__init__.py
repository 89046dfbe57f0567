"""History backfill: per-second raw data, 1m/15m aggregates and 3 years of quarter-hours, via promtool."""
