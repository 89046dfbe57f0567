"""Settings from the environment, with the native defaults of DESIGN.md."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from homewatt.shards import check as check_shards

REPO = Path(__file__).resolve().parent.parent
RAW_DAYS = 90.0  # the backfill's days at 1 s before the live start
HISTORY_DAYS = 3 * 365 + 1.0  # and its days of quarter-hours before those: three years
# The nightly partner job's defaults, chosen with benchmarks/partner_job_rate.py.
PARTNER_FETCH_WORKERS = 3  # readers of the history, each one range request at a time
PARTNER_FETCH_BATCH = 5  # sensors per range request: 5 cost ~10 % less CPU than 1, 10 no less than 5
PARTNER_SEND_WORKERS = 4  # requests to the partner in flight at most


def hostport(url: str) -> tuple[str, int]:
    parts = urlsplit(url if "//" in url else f"http://{url}")
    if parts.hostname is None or parts.port is None:
        raise ValueError(f"{url!r}: expected http://host:port")
    return parts.hostname, parts.port


@dataclass(frozen=True)
class Settings:
    prometheus_url: str
    pushgateway_url: str
    partner_url: str
    exporter_listen: str
    stack_listen: str  # the native stack's runner: its parts' restarts on /metrics
    grafana_url: str
    history_url: str  # where history is read: Thanos Query (natively, 127.0.0.1:10902)
    thanos_port_base: int  # the other Thanos components listen on the ports just above it
    alertmanager_url: str  # where Prometheus and the Thanos Ruler send alerts
    receiver_listen: str  # the project's webhook receiver: Alertmanager's notifications land there
    data: Path
    fleet: str | None
    raw_days: float  # the backfill: days at 1 s before the live start
    history_days: float  # and days of quarter-hours before those
    partner_fetch_workers: int  # the nightly job's readers of the history
    partner_fetch_batch: int  # sensors per range request
    partner_send_workers: int  # and its senders to the partner
    shards: int = 1  # Prometheus servers splitting the sensors (homewatt/shards.py)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        return cls(
            prometheus_url=env.get("PROMETHEUS_URL", "http://127.0.0.1:9090").rstrip("/"),
            pushgateway_url=env.get("PUSHGATEWAY_URL", "http://127.0.0.1:9091").rstrip("/"),
            partner_url=env.get("PARTNER_URL", "http://127.0.0.1:8088").rstrip("/"),
            exporter_listen=env.get("EXPORTER_LISTEN", "127.0.0.1:9105"),
            stack_listen=env.get("HOMEWATT_STACK_LISTEN", "127.0.0.1:9107"),
            grafana_url=env.get("GRAFANA_URL", "http://127.0.0.1:3000").rstrip("/"),
            history_url=env.get("HISTORY_URL", "http://127.0.0.1:10902").rstrip("/"),
            thanos_port_base=int(env.get("HOMEWATT_THANOS_PORT_BASE", "10903")),
            alertmanager_url=env.get("ALERTMANAGER_URL", "http://127.0.0.1:9093").rstrip("/"),
            receiver_listen=env.get("HOMEWATT_RECEIVER_LISTEN", "127.0.0.1:9095"),
            data=Path(env.get("HOMEWATT_DATA", "./data")).resolve(),
            fleet=env.get("HOMEWATT_FLEET") or None,
            raw_days=float(env.get("HOMEWATT_RAW_DAYS", RAW_DAYS)),
            history_days=float(env.get("HOMEWATT_HISTORY_DAYS", HISTORY_DAYS)),
            partner_fetch_workers=_positive(env, "HOMEWATT_PARTNER_FETCH_WORKERS", PARTNER_FETCH_WORKERS),
            partner_fetch_batch=_positive(env, "HOMEWATT_PARTNER_FETCH_BATCH", PARTNER_FETCH_BATCH),
            partner_send_workers=_positive(env, "HOMEWATT_PARTNER_SEND_WORKERS", PARTNER_SEND_WORKERS),
            shards=check_shards(int(env.get("HOMEWATT_SHARDS", "1"))),
        )


def _positive(env: dict[str, str], name: str, default: int) -> int:
    value = int(env.get(name) or default)
    if value < 1:
        raise ValueError(f"{name}={value}: must be 1 or more")
    return value


def read_token(env: dict[str, str] | None = None) -> str:
    """The partner's bearer token, shared by the job and the reference partner."""
    env = dict(os.environ if env is None else env)
    if env.get("PARTNER_TOKEN"):
        return env["PARTNER_TOKEN"]
    if env.get("PARTNER_TOKEN_FILE"):
        path = Path(env["PARTNER_TOKEN_FILE"])
        token = path.read_text().strip()
        if not token:  # e.g. a compose secret made from an unset variable
            raise RuntimeError(f"{path} is empty: no partner token (set PARTNER_TOKEN in .env)")
        return token
    raise RuntimeError("no partner token: set PARTNER_TOKEN or PARTNER_TOKEN_FILE")
