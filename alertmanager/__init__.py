"""Alerting: Alertmanager's configuration as code (`config.py`) and the project's own
webhook receiver (`receiver.py`), which stores every notification it is sent."""
