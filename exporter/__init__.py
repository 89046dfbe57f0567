"""Live homewatt exporter: every sensor's power and energy counter for the current second."""
