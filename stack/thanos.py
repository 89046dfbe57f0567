"""The native Thanos tier: sidecar, store gateway, Query, Ruler and the two compactors.

One function per component, as kube-thanos keeps one file per component; every
flag is written here once and listed in thanos/flags.yml (a test runs
`thanos <component> --help` on the built binary and fails on a flag it lacks).
The bucket is a directory (`data/bucket`), the filesystem stand-in for the
Docker stack's MinIO; blocks and their retention are the same.

Ports: Query's HTTP port comes from HISTORY_URL (10902); the others sit just
above HOMEWATT_THANOS_PORT_BASE (10903: Query gRPC, then sidecar, store and
Ruler gRPC/HTTP, then the compactors' HTTP), all on 127.0.0.1.  With
HOMEWATT_SHARDS > 1, shard i >= 1 has its own Prometheus, sidecar and Ruler from
HOMEWATT_THANOS_PORT_BASE + SHARD_BASE + SHARD_STRIDE * (i - 1) on; the store,
Query and the compactors serve every shard.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from homewatt import ruleralign, streams
from homewatt.config import REPO, Settings, hostport
from homewatt.contract import QUARTER_STREAM, RAW_STREAM, SHARD_LABEL, STREAM_LABEL
from homewatt.procs import http_ok
from homewatt.promconfig import RULER_RULES
from homewatt.shards import labels as shard_labels
from stack.supervisor import Service

BINARY = REPO / "bin" / "thanos"

# Labels that tell copies of one series apart, never different series: Query merges them.
REPLICA_LABELS = (STREAM_LABEL, SHARD_LABEL)

# Retention per stream and resolution (thanos/README.md says why).  Raw 1 s data
# stays 100 days: the 90-day backfill stays queryable at 1 s for its whole span.
RAW_RETENTION = "100d"
DOWNSAMPLED_RETENTION = "1100d"  # three years and a margin
QUARTER_RETENTION = "1100d"

# Offsets above HOMEWATT_THANOS_PORT_BASE.
PORTS = {
    "query-grpc": 0,
    "sidecar-grpc": 1,
    "sidecar-http": 2,
    "store-grpc": 3,
    "store-http": 4,
    "rule-grpc": 5,
    "rule-http": 6,
    "compact-raw-http": 7,
    "compact-quarter-http": 8,
}
COMPACTORS = {RAW_STREAM: "compact-raw", QUARTER_STREAM: "compact-quarter"}
# Shards 1, 2, ... (HOMEWATT_SHARDS): their Prometheus, sidecar and Ruler ports, SHARD_STRIDE
# apart from HOMEWATT_THANOS_PORT_BASE + SHARD_BASE on; shard 0 is the ports above.
SHARD_BASE = 20
SHARD_STRIDE = 10
SHARD_PORTS = {"prometheus": 0, "sidecar-grpc": 1, "sidecar-http": 2, "rule-grpc": 3, "rule-http": 4}


class ThanosMissing(FileNotFoundError):
    pass


@dataclass(frozen=True)
class Timings:
    """The waits and retentions that make Thanos safe on a real bucket; tests shorten them."""

    consistency_delay: str = "30m"  # the compactor leaves fresher blocks alone (partial uploads)
    compact_interval: str = "5m"
    store_sync: str = "1m"  # how soon the store gateway sees an uploaded block
    delete_delay: str = "48h"  # a deleted block stays readable this long for running queries
    ignore_marked_after: str = "24h"  # the store stops serving a block marked for deletion (< delete_delay)
    block_duration: str = "2h"  # the Ruler's TSDB block length, what it uploads
    raw_retention: str = RAW_RETENTION
    downsampled_retention: str = DOWNSAMPLED_RETENTION
    quarter_retention: str = QUARTER_RETENTION


@dataclass(frozen=True)
class Thanos:
    settings: Settings
    prometheus_config: Path = streams.DEFAULT_CONFIG
    timings: Timings = Timings()
    rule_files: tuple[Path, ...] = tuple((REPO / "prometheus" / p).resolve() for p in RULER_RULES)

    @property
    def binary(self) -> str:
        if not BINARY.exists():
            raise ThanosMissing(f"{BINARY} is missing: `make thanos` builds it from thanos/build/go.mod")
        return str(BINARY)

    @property
    def dir(self) -> Path:
        return self.settings.data / "thanos"

    @property
    def bucket(self) -> Path:
        return self.settings.data / "bucket"

    def addr(self, name: str, shard: int = 0) -> str:
        base = self.settings.thanos_port_base
        if shard == 0:
            return f"127.0.0.1:{base + PORTS[name]}"
        return f"127.0.0.1:{base + SHARD_BASE + SHARD_STRIDE * (shard - 1) + SHARD_PORTS[name]}"

    @property
    def shards(self) -> range:
        return range(self.settings.shards)

    def prometheus_url(self, shard: int = 0) -> str:
        """Shard 0 is PROMETHEUS_URL; the others listen among the Thanos ports."""
        return self.settings.prometheus_url if shard == 0 else f"http://{self.addr('prometheus', shard)}"

    def tsdb(self, shard: int = 0) -> Path:
        return self.settings.data / ("prometheus" if shard == 0 else f"prometheus-{shard}")

    @staticmethod
    def suffix(shard: int) -> str:
        return "" if shard == 0 else f"-{shard}"

    def objstore_config(self) -> Path:
        """The filesystem bucket's config, with an absolute path (Thanos resolves it from its cwd)."""
        path = self.settings.data / "run" / "objstore.yml"
        path.parent.mkdir(parents=True, exist_ok=True)
        self.bucket.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump({"type": "FILESYSTEM", "config": {"directory": str(self.bucket)}}))
        return path

    def _service(
        self,
        component: str,
        args: list[str],
        name: str | None = None,
        http: str | None = None,
        grpc: bool = True,
        objstore: bool = True,
        ready_timeout: float = 60.0,
        shard: int = 0,
    ) -> Service:
        """The flags every component shares are written here once: its addresses, the bucket, logging."""
        name = name or component
        http = http or self.addr(f"{name}-http", shard)
        common = [f"--http-address={http}"]
        if grpc:
            common.append(f"--grpc-address={self.addr(f'{name}-grpc', shard)}")
        if objstore:
            common.append(f"--objstore.config-file={self.objstore_config()}")
        host, port = hostport(http)
        return Service(
            name=f"thanos-{name}{self.suffix(shard)}",
            argv=[self.binary, component, *args, *common, "--log.level=info"],
            listen=(host, port),
            ready=http_ok(f"http://{http}/-/ready"),
            ready_timeout=ready_timeout,
        )

    def sidecar(self, shard: int = 0) -> Service:
        """Uploads a Prometheus's 2 h blocks to the bucket and serves its recent data to Query."""
        return self._service(
            "sidecar",
            [f"--tsdb.path={self.tsdb(shard)}", f"--prometheus.url={self.prometheus_url(shard)}"],
            shard=shard,
        )

    def store(self) -> Service:
        """Serves every block of the bucket, both streams, to Query."""
        return self._service(
            "store",
            [
                f"--data-dir={self.dir / 'store'}",
                f"--sync-block-duration={self.timings.store_sync}",
                f"--ignore-deletion-marks-delay={self.timings.ignore_marked_after}",
            ],
            ready_timeout=120.0,
        )

    def query(self, endpoints: list[str] | None = None) -> Service:
        """One view over the sidecars, the store and the Rulers; the two streams merge 1:1 (chain),
        and so do the shards (a sensor lives in one: homewatt/shards.py).

        Every endpoint is strict: one that is down stays in the set, so a query that refuses
        partial answers (the History datasource, the nightly job) fails instead of quietly
        reading less (a fleet's sum without a shard).  `endpoints`: tests that run only some
        components (the store alone) name those.
        """
        host, port = hostport(self.settings.history_url)
        if endpoints is None:
            endpoints = [self.addr("store-grpc")] + [
                self.addr(n, i) for i in self.shards for n in ("sidecar-grpc", "rule-grpc")
            ]
        config = {"endpoints": [{"address": a, "strict": True} for a in endpoints]}
        return self._service(
            "query",
            [
                f"--endpoint.sd-config={yaml.safe_dump(config)}",
                *(f"--query.replica-label={label}" for label in REPLICA_LABELS),
                "--deduplication.func=chain",
                "--query.auto-downsampling",
            ],
            http=f"{host}:{port}",
            objstore=False,
        )

    def ruler(self, shard: int = 0) -> Service:
        """The 15m group (with the counter's reading on each quarter-hour), written as the quarter
        stream, and the alerts that need weeks of history, sent to Alertmanager without the stream label
        (as Prometheus's are)."""
        shards = self.settings.shards
        labels = {
            **streams.stream_labels(QUARTER_STREAM, self.prometheus_config),
            **shard_labels(shard, shards),
        }
        data_dir = self.dir / f"rule{self.suffix(shard)}"
        # Copies whose recording groups read and stamp on the quarter-hour, and read only this
        # shard's sensors; alert-only files (weeks of every sensor) run in shard 0's Ruler only.
        sources = self.rule_files if shard == 0 else tuple(filter(ruleralign.records, self.rule_files))
        dest = self.settings.data / "run" / f"rules{self.suffix(shard)}"
        files = ruleralign.ruler_files(sources, dest, data_dir, shard, shards)
        return self._service(
            "rule",
            [
                f"--data-dir={data_dir}",
                *(f"--rule-file={r}" for r in files),
                f"--query={self.settings.history_url}",
                *streams.label_flags(labels),
                f"--tsdb.block-duration={self.timings.block_duration}",
                f"--alertmanagers.url={self.settings.alertmanager_url}",
                *(f"--alert.label-drop={label}" for label in REPLICA_LABELS),
                f"--alert.query-url={self.settings.history_url}",
            ],
            shard=shard,
        )

    def compactor(self, stream: str) -> Service:
        """Compacts, downsamples and expires one stream: each has its own retention."""
        name = COMPACTORS[stream]
        if stream == RAW_STREAM:
            retention = [
                f"--retention.resolution-raw={self.timings.raw_retention}",
                f"--retention.resolution-5m={self.timings.downsampled_retention}",
                f"--retention.resolution-1h={self.timings.downsampled_retention}",
            ]
        else:
            retention = [
                f"--retention.resolution-raw={self.timings.quarter_retention}",
                "--downsampling.disable",
            ]
        return self._service(
            "compact",
            [
                "--wait",
                f"--wait-interval={self.timings.compact_interval}",
                f"--data-dir={self.dir / name}",
                f"--selector.relabel-config-file={REPO / 'thanos' / f'select-{stream}.yml'}",
                *retention,
                f"--consistency-delay={self.timings.consistency_delay}",
                f"--delete-delay={self.timings.delete_delay}",
                # Overlapping blocks (a backfill run again after its state was lost) merge 1:1
                # instead of halting the compactor.
                "--compact.enable-vertical-compaction",
            ],
            name=name,
            grpc=False,
        )

    def services(self) -> list[Service]:
        """In start order: Query needs nothing to start; the Ruler queries Query."""
        return [
            *(self.sidecar(i) for i in self.shards),
            self.store(),
            self.query(),
            *(self.ruler(i) for i in self.shards),
            self.compactor(RAW_STREAM),
            self.compactor(QUARTER_STREAM),
        ]
