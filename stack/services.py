"""The processes of the native stack, described once for `make up` and the tests.

Adding a process to `make up` means adding one `Service` here (command line,
listen address, readiness check); the supervisor does the rest.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from alertmanager import config as amconfig
from homewatt import promconfig
from homewatt.config import REPO, Settings, hostport
from homewatt.fleet import Fleet, load_fleet
from homewatt.procs import http_ok, port_in_use
from stack.supervisor import Service
from stack.thanos import COMPACTORS, Thanos

# With Thanos, Prometheus keeps three days locally (the Live views: today, yesterday);
# the sidecar uploads every 2 h block, and the bucket holds the rest.
LOCAL_RETENTION = "3d"
# A standalone Prometheus (serving a directory of blocks in tests) keeps everything.
STANDALONE_RETENTION = "1200d"
MQTT_PORT = 1883
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def binary(*names: str) -> str:
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    raise FileNotFoundError(
        f"none of {', '.join(names)} is on PATH: run `make up` or `make test`, which install "
        "the Debian packages prometheus, prometheus-pushgateway, prometheus-alertmanager and mosquitto"
    )


# The Pushgateway's flags besides its addresses, the same in docker-compose.yml (a test checks).
# Its push-time consistency check gathers every group it holds on each push, so a push
# costs time in proportion to the sensors already pushed: 16 ms at 500 groups, 250 ms at
# 3,000, more than the rest of a 10,000-sensor night (benchmarks/partner_job_rate.py).
# Without it, one inconsistent push would make the Pushgateway's own /metrics fail; the
# only pusher is the nightly job, whose pushes follow the metric contract and are tested.
PUSHGATEWAY_FLAGS = ("--persistence.interval=30s", "--push.disable-consistency-check")


@dataclass(frozen=True)
class Stack:
    settings: Settings

    @property
    def data(self) -> Path:
        return self.settings.data

    @property
    def tsdb(self) -> Path:
        """Shard 0's TSDB (the only one by default)."""
        return self.thanos().tsdb(0)

    def addresses(self) -> dict[str, str]:
        def addr(url: str) -> str:
            host, port = hostport(url)
            return f"{host}:{port}"

        return {
            "prometheus": addr(self.settings.prometheus_url),
            "pushgateway": addr(self.settings.pushgateway_url),
            "exporter": self.settings.exporter_listen,
            "stack": self.settings.stack_listen,
            "alertmanager": addr(self.settings.alertmanager_url),
        }

    def scrape_targets(self) -> dict[str, str | list[str]]:
        """What Prometheus scrapes and alerts to (promconfig's roles): the parts above and
        the Thanos tier on this run's ports."""
        thanos = self.thanos()
        host, port = hostport(self.settings.history_url)
        return {
            **self.addresses(),
            "thanos-sidecar": [thanos.addr("sidecar-http", i) for i in thanos.shards],
            "thanos-store": thanos.addr("store-http"),
            "thanos-query": f"{host}:{port}",
            "thanos-rule": [thanos.addr("rule-http", i) for i in thanos.shards],
            "thanos-compact": [thanos.addr(f"{name}-http") for name in COMPACTORS.values()],
        }

    def prometheus(self, standalone: bool = False, block: str = "2h", shard: int = 0) -> Service:
        """Prometheus under a Thanos sidecar: 2 h blocks that it never compacts (the sidecar
        uploads them, the compactor compacts them in the bucket), the 1m rules only.

        `standalone`: a Prometheus that holds its own history and runs every rule file.
        `block`: the block length (tests shorten it to see the sidecar upload).
        `shard`: which of HOMEWATT_SHARDS (homewatt/shards.py); shard 0 is PROMETHEUS_URL.
        """
        if standalone:
            rules, tsdb = None, [f"--storage.tsdb.retention.time={STANDALONE_RETENTION}"]
        else:
            rules = promconfig.PROMETHEUS_RULES
            tsdb = [
                f"--storage.tsdb.retention.time={LOCAL_RETENTION}",
                f"--storage.tsdb.min-block-duration={block}",
                f"--storage.tsdb.max-block-duration={block}",
            ]
        thanos = self.thanos()
        url = thanos.prometheus_url(shard)
        host, port = hostport(url)
        targets = {**self.scrape_targets(), "prometheus": f"{host}:{port}"}
        config = promconfig.write(
            self.data / "run" / f"prometheus{thanos.suffix(shard)}.yml",
            targets,
            rule_files=rules,
            shard=shard,
            shards=self.settings.shards,
        )
        return Service(
            name=f"prometheus{thanos.suffix(shard)}",
            argv=[
                binary("prometheus"),
                f"--config.file={config}",
                f"--storage.tsdb.path={thanos.tsdb(shard)}",
                *tsdb,
                f"--web.listen-address={host}:{port}",
                "--web.enable-lifecycle",
                "--web.enable-admin-api",
            ],
            listen=(host, port),
            ready=http_ok(f"{url}/-/ready"),
        )

    def prometheus_urls(self) -> list[str]:
        return [self.thanos().prometheus_url(i) for i in range(self.settings.shards)]

    @property
    def live_url(self) -> str:
        """Where the live views read: the one Prometheus, or Query over the shards' sidecars."""
        return self.settings.prometheus_url if self.settings.shards == 1 else self.settings.history_url

    @property
    def fleet(self) -> Fleet:
        return load_fleet(self.settings.fleet)

    def mosquitto(self, host: str, port: int) -> Service:
        """The MQTT broker the fleet's devices publish to, when the fleet names a local one."""
        conf = self.data / "run" / f"mosquitto-{port}.conf"
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text(
            f"# Written by homewatt (stack/services.py) at each start.\nlistener {port} {host}\n"
            "allow_anonymous true\npersistence false\nlog_dest stdout\n"
        )
        return Service(
            name=f"mosquitto-{port}" if port != MQTT_PORT else "mosquitto",
            argv=[binary("mosquitto", "/usr/sbin/mosquitto"), "-c", str(conf)],
            listen=(host, port),
            ready=lambda: port_in_use(host, port),
        )

    def simulator(self, journal: Path | None = None) -> Service:
        """The device simulator for the fleet's simulated devices; `journal`: tests compare what
        it sent with what Prometheus stored."""
        argv = [sys.executable, "-m", "devices.simulate", "--data", str(self.data)]
        if journal:
            argv += ["--journal", str(journal)]
        return Service(name="simulator", argv=argv, ready=lambda: True, env=self._env())

    def device_services(self) -> list[Service]:
        """A broker for every local broker the fleet's MQTT devices name, and the simulator
        if some devices are simulated.  A remote broker is someone else's to run."""
        devices = [s.device for s in self.fleet.devices if s.device is not None]
        brokers = {hostport(d.broker) for d in devices if d.broker}
        out = [self.mosquitto(h, p) for h, p in sorted(brokers) if h in LOCAL_HOSTS]
        if any(d.simulated for d in devices):
            out.append(self.simulator())
        return out

    def pushgateway(self) -> Service:
        url = self.settings.pushgateway_url
        return Service(
            name="pushgateway",
            argv=[
                binary("prometheus-pushgateway", "pushgateway"),
                f"--web.listen-address={self.addresses()['pushgateway']}",
                f"--persistence.file={self.data / 'pushgateway' / 'metrics.store'}",
                *PUSHGATEWAY_FLAGS,
            ],
            listen=hostport(url),
            ready=http_ok(f"{url}/-/ready"),
        )

    def exporter(self) -> Service:
        listen = self.settings.exporter_listen
        argv = [sys.executable, "-m", "exporter", "--listen", listen, "--data", str(self.data)]
        if self.settings.fleet:
            argv += ["--fleet", self.settings.fleet]
        return Service(
            name="exporter",
            argv=argv,
            listen=hostport(listen),
            ready=http_ok(f"http://{listen}/metrics"),
            ready_timeout=180.0,  # the first start sums the energy ledger
        )

    def partner_env(self) -> dict[str, str]:
        """PARTNER_TOKEN(_FILE) as given, else a token made once for the native stack."""
        if os.environ.get("PARTNER_TOKEN") or os.environ.get("PARTNER_TOKEN_FILE"):
            return {}
        path = self.data / "partner_token"
        if not path.exists():
            self.data.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(32) + "\n")
            path.chmod(0o600)
        return {"PARTNER_TOKEN_FILE": str(path)}

    def partner(self) -> Service:
        host, port = hostport(self.settings.partner_url)
        return Service(
            name="partner",
            argv=[sys.executable, "-m", "reference_partner", "--listen", f"{host}:{port}"],
            listen=(host, port),
            ready=http_ok(f"{self.settings.partner_url}/healthz"),
            env=self.partner_env(),
        )

    def scheduler(self) -> Service:
        return Service(
            name="scheduler",
            argv=[sys.executable, "-m", "partner_job", "schedule", "--no-progress"],
            ready=lambda: True,
            env={**self._env(), **self.partner_env()},
        )

    def grafana(self) -> Service | None:
        """Grafana with the repository's provisioning, if a Grafana binary is installed."""
        path = shutil.which("grafana-server") or shutil.which("grafana")
        if path is None:
            return None
        argv = [path] if path.endswith("grafana-server") else [path, "server"]
        home = os.environ.get("GRAFANA_HOME") or (
            "/usr/share/grafana"
            if Path("/usr/share/grafana").exists()
            else str(Path(path).resolve().parent.parent)
        )
        host, port = hostport(self.settings.grafana_url)
        grafana_dir = REPO / "grafana"
        return Service(
            name="grafana",
            argv=[*argv, "--homepath", home, "--config", str(grafana_dir / "grafana.ini")],
            listen=(host, port),
            ready=http_ok(f"{self.settings.grafana_url}/api/health"),
            env={
                "GF_PATHS_PROVISIONING": str(grafana_dir / "provisioning"),
                "GF_PATHS_DATA": str(self.data / "grafana"),
                "GF_PATHS_LOGS": str(self.data / "grafana" / "log"),
                "GF_SERVER_HTTP_ADDR": host,
                "GF_SERVER_HTTP_PORT": str(port),
                "PROMETHEUS_URL": self.live_url,
                "HISTORY_URL": self.settings.history_url,
                "HOMEWATT_DASHBOARDS": str(grafana_dir / "dashboards"),
            },
            ready_timeout=120.0,
        )

    def alertmanager(self, timings: amconfig.Timings | None = None) -> Service:
        """Alertmanager, one node (no cluster port), sending to the project's receiver.

        Its config is rendered from alertmanager/config.py at each start, pointed at
        this run's receiver; `timings`: the tests shorten the group waits.
        """
        config = amconfig.write(
            self.data / "run" / "alertmanager.yml",
            f"http://{self.settings.receiver_listen}/webhook",
            timings or amconfig.Timings(),
        )
        url = self.settings.alertmanager_url
        host, port = hostport(url)
        return Service(
            name="alertmanager",
            argv=[
                binary("prometheus-alertmanager", "alertmanager"),
                f"--config.file={config}",
                f"--storage.path={self.data / 'alertmanager'}",
                f"--web.listen-address={host}:{port}",
                "--cluster.listen-address=",  # a single node: no gossip, no port 9094
                f"--web.external-url={url}",
            ],
            listen=(host, port),
            ready=http_ok(f"{url}/-/ready"),
        )

    def receiver(self) -> Service:
        """The webhook receiver that stores Alertmanager's notifications (data/alerts/)."""
        listen = self.settings.receiver_listen
        argv = [sys.executable, "-m", "alertmanager.receiver", "--listen", listen, "--data", str(self.data)]
        return Service(
            name="receiver",
            argv=argv,
            listen=hostport(listen),
            ready=http_ok(f"http://{listen}/healthz"),
        )

    def _env(self) -> dict[str, str]:
        env = {
            "PROMETHEUS_URL": self.settings.prometheus_url,
            "PUSHGATEWAY_URL": self.settings.pushgateway_url,
            "PARTNER_URL": self.settings.partner_url,
            "HISTORY_URL": self.settings.history_url,
            "HOMEWATT_DATA": str(self.data),
        }
        if self.settings.fleet:
            env["HOMEWATT_FLEET"] = self.settings.fleet
        return env

    def services(self, standalone: bool = False) -> list[Service]:
        """The live path, which runs before the backfill; Thanos and `partner_services` follow."""
        (self.data / "pushgateway").mkdir(parents=True, exist_ok=True)
        prometheus = [self.prometheus(standalone, shard=i) for i in range(self.settings.shards)]
        return [self.pushgateway(), *self.device_services(), self.exporter(), *prometheus]

    def alerting_services(self) -> list[Service]:
        """The receiver first, so that Alertmanager's first notification has somewhere to land."""
        return [self.receiver(), self.alertmanager()]

    def thanos(self) -> Thanos:
        return Thanos(self.settings)

    def partner_services(self) -> list[Service]:
        return [self.partner(), self.scheduler()]
