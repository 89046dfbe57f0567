"""docker-compose.yml, checked without a Docker engine.

There is no Docker here, so the compose file is validated against the compose
specification's schema, parsed, and cross-checked with the files it mounts:
the Prometheus config it runs is generated from the native one and started
for real, every Thanos flag is listed with its documentation page, the two
block streams' labels, selectors and retentions fit together, and no secret
lives in git.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from backfill.api import upload_commands
from backfill.ingest import Target
from homewatt import contract, promconfig, ruleralign, streams
from homewatt.config import REPO
from homewatt.procs import free_port, http_ok, wait_until
from stack.services import PUSHGATEWAY_FLAGS
from stack.supervisor import Service, Supervisor
from stack.thanos import REPLICA_LABELS

COMPOSE = REPO / "docker-compose.yml"
MOUNT = "/etc/homewatt"  # where compose mounts the repository's config folders
THREE_YEARS_DAYS = 3 * 365 + 1


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict[str, Any]:
    return compose["services"]


def command(service: dict[str, Any]) -> list[str]:
    cmd = service.get("command", [])
    return cmd.split() if isinstance(cmd, str) else list(cmd)


def flags(args: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for a in args:
        if a.startswith("--"):
            name, _, value = a[2:].partition("=")
            out.setdefault(name, []).append(value)
    return out


def thanos_services(services) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in services.items() if s.get("image", "").startswith("quay.io/thanos/thanos:")}


def repo_path(container_path: str, service: dict[str, Any]) -> Path:
    """The repository file behind a path in the container, through the service's bind mounts."""
    for vol in service.get("volumes", []):
        src, _, rest = vol.partition(":")
        dst = rest.split(":")[0]
        if src.startswith("./") and (container_path == dst or container_path.startswith(dst + "/")):
            return REPO / src[2:] / container_path[len(dst) :].lstrip("/")
    raise AssertionError(f"{container_path} is not under a bind mount of the repository")


@pytest.mark.integration
def test_compose_file_validates_against_the_compose_specification():
    proc = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.integration
def test_the_schema_check_catches_a_broken_file(tmp_path):
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE.read_text().replace("condition: service_healthy", "condition: when_ready", 1))
    proc = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(broken)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0 and "when_ready" in proc.stdout


def test_the_stack_has_every_part(services):
    assert {
        "prometheus",
        "thanos-sidecar",
        "pushgateway",
        "exporter",
        "thanos-store",
        "thanos-query",
        "thanos-ruler",
        "thanos-compact-raw",
        "thanos-compact-quarter",
        "minio",
        "minio-init",
        "grafana",
        "partner",
        "scheduler",
        "backfill",
        "mosquitto",
    } <= set(services)


def test_images_are_pinned_and_the_dockerfile_uses_the_same_ones(services):
    for name, s in services.items():
        image = s["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest" and re.search(r"\d", tag), (name, image)
    dockerfile = (REPO / "Dockerfile").read_text()
    assert f"PROMETHEUS_IMAGE={services['prometheus']['image']}" in dockerfile
    assert f"THANOS_IMAGE={services['thanos-query']['image']}" in dockerfile
    built = [n for n, s in services.items() if "build" in s]
    assert sorted(built) == ["backfill", "exporter", "partner", "receiver", "scheduler"]


def test_only_grafana_is_published_beyond_localhost(services):
    for name, s in services.items():
        for port in s.get("ports", []):
            if name == "grafana":
                continue
            assert str(port).startswith("127.0.0.1:"), (name, port)
    assert services["grafana"]["ports"] == ["3000:3000"]


def test_dependencies_wait_for_health_or_completion(services):
    one_shot = {"minio-init", "backfill"}
    for name, s in services.items():
        for dep, spec in s.get("depends_on", {}).items():
            assert dep in services, (name, dep)
            want = "service_completed_successfully" if dep in one_shot else "service_healthy"
            assert spec["condition"] == want, (name, dep)
            if want == "service_healthy":
                assert "healthcheck" in services[dep], dep
    for name, s in services.items():
        if name not in one_shot and name != "scheduler":
            assert "healthcheck" in s, name  # every server says when it is ready
    assert services["backfill"]["restart"] == "on-failure"


def test_volumes_are_named_or_repository_folders(compose, services):
    declared = set(compose["volumes"])
    used = set()
    for name, s in services.items():
        for vol in s.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith("./"):
                assert (REPO / src[2:]).exists(), (name, vol)
                assert vol.endswith(":ro"), (name, vol)  # configs are mounted read-only
            else:
                assert src in declared, (name, vol)
                used.add(src)
    assert used == declared


def test_every_config_path_in_a_command_is_a_repository_file(services):
    for name, s in services.items():
        for arg in command(s):
            for path in re.findall(rf"{MOUNT}/[\w./-]+", arg):
                assert repo_path(path, s).is_file(), (name, path)


def test_prometheus_runs_the_generated_compose_config(services):
    assert promconfig.COMPOSE.read_text() == promconfig.compose_config(), (
        "prometheus/prometheus.compose.yml is stale: run `make generate`"
    )
    args = flags(command(services["prometheus"]))
    (config,) = args["config.file"]
    assert repo_path(config, services["prometheus"]) == promconfig.COMPOSE
    # The sidecar needs Prometheus's own compaction off (equal min and max block durations).
    assert args["storage.tsdb.min-block-duration"] == args["storage.tsdb.max-block-duration"] == ["2h"]


def test_each_rule_file_runs_once_in_the_stack(services):
    rules = REPO / "rules"
    native = sorted(rules.glob("*.rules.yml"))
    ruler_only = sorted((rules / "ruler").glob("*.rules.yml"))
    prom_rules = [
        (promconfig.COMPOSE.parent / p).resolve()
        for p in yaml.safe_load(promconfig.COMPOSE.read_text())["rule_files"]
    ]
    ruler_args = flags(command(services["thanos-ruler"]))
    copies = {p: repo_path(p, services["thanos-ruler"]) for p in ruler_args["rule-file"]}
    # The Ruler loads generated copies (thanos/rules/), each its source plus the query_offset
    # that its paths in the container give (homewatt/ruleralign.py).
    ruler = [rules / copy.name for copy in copies.values()]
    for loaded_as, copy in copies.items():
        assert copy.parent == ruleralign.COMPOSE_DIR
        (data_dir,) = ruler_args["data-dir"]
        assert (data_dir, loaded_as) == (
            ruleralign.COMPOSE_DATA_DIR,
            f"{ruleralign.COMPOSE_MOUNT}/rules/{copy.name}",
        )
        assert copy.read_text() == ruleralign.render(rules / copy.name, data_dir, loaded_as), (
            f"{copy} is stale: run `make generate`"
        )
    assert sorted(prom_rules + ruler) == sorted(native + ruler_only)  # none lost, none evaluated twice
    assert ruler == [(promconfig.COMPOSE.parent / p).resolve() for p in promconfig.RULER_RULES]
    # Prometheus (native or Docker) never loads the Ruler-only rules.
    assert not set(ruler_only) & set(prom_rules)
    native_glob = yaml.safe_load(promconfig.SOURCE.read_text())["rule_files"]
    assert native_glob == ["../rules/*.rules.yml"]


def test_stream_labels_selectors_and_retention_fit_together(services):
    compose_config = promconfig.COMPOSE
    raw = streams.stream_labels(contract.RAW_STREAM, compose_config)
    quarter = streams.stream_labels(contract.QUARTER_STREAM, compose_config)
    ruler = flags(command(services["thanos-ruler"]))
    assert sorted(f"--label={v}" for v in ruler["label"]) == streams.label_flags(quarter)
    query = flags(command(services["thanos-query"]))
    assert query["query.replica-label"] == list(REPLICA_LABELS)  # as `make up`'s Query
    assert ruler["alert.label-drop"] == list(REPLICA_LABELS)
    # The two streams differ by the replica label only, so Query merges them into one series set.
    assert {k: v for k, v in raw.items() if k != contract.STREAM_LABEL} == {
        k: v for k, v in quarter.items() if k != contract.STREAM_LABEL
    }
    endpoints = {e.split(":")[0] for e in query["endpoint"]}
    assert endpoints == {"thanos-sidecar", "thanos-store", "thanos-ruler"}

    def days(value: str) -> int:
        m = re.fullmatch(r"(\d+)d", value)
        assert m, value
        return int(m.group(1))

    selected = {}
    for name in ("thanos-compact-raw", "thanos-compact-quarter"):
        s = services[name]
        args = flags(command(s))
        (sel,) = args["selector.relabel-config-file"]
        (rule,) = yaml.safe_load(repo_path(sel, s).read_text())
        assert rule["action"] == "keep" and rule["source_labels"] == [contract.STREAM_LABEL]
        kept = [st for st in contract.STREAMS if re.fullmatch(rule["regex"], st)]
        assert len(kept) == 1, name
        selected[kept[0]] = args
        assert "compact.enable-vertical-compaction" in args  # overlaps merge instead of halting
        assert "wait" in args
    assert set(selected) == set(contract.STREAMS)  # each stream has exactly one compactor
    raw_args, quarter_args = selected[contract.RAW_STREAM], selected[contract.QUARTER_STREAM]
    # Raw 1 s data outlives the partner's 30-day window (with catch-up), not three years.
    assert 31 <= days(raw_args["retention.resolution-raw"][0]) < 365
    assert days(raw_args["retention.resolution-5m"][0]) >= THREE_YEARS_DAYS
    assert days(raw_args["retention.resolution-1h"][0]) >= THREE_YEARS_DAYS
    # The quarter stream: three years at full resolution, never downsampled.
    assert days(quarter_args["retention.resolution-raw"][0]) >= THREE_YEARS_DAYS
    assert "downsampling.disable" in quarter_args


@pytest.mark.integration
def test_every_thanos_flag_is_listed_with_its_documentation(services):
    listed = yaml.safe_load((REPO / "thanos" / "flags.yml").read_text())
    version = listed["version"]
    components = listed["components"]
    for name, s in thanos_services(services).items():
        assert s["image"].endswith(f":{version}"), name
        args = command(s)
        component = args[0]
        assert component in components, (name, component)
        unlisted = set(flags(args)) - set(components[component]["flags"])
        assert not unlisted, (name, unlisted)
        assert f"/{version.rsplit('.', 1)[0]}/" in components[component]["doc"]
    target = Target(Path("/data/bucket-outbox"), per_stream=True)
    labels = {st: streams.stream_labels(st) for st in contract.STREAMS}
    for cmd in upload_commands(target, Path("/etc/homewatt/thanos/objstore.s3.yml"), labels):
        component = " ".join(cmd[1:4])
        assert set(flags(cmd)) <= set(components[component]["flags"]), cmd


def test_object_store_configs(services):
    s3 = yaml.safe_load((REPO / "thanos" / "objstore.s3.yml").read_text())
    assert s3["type"] == "S3"
    assert "access_key" not in s3["config"] and "secret_key" not in s3["config"]  # from the environment
    init = " ".join(command(services["minio-init"]))
    assert f"mc mb --ignore-existing homewatt/{s3['config']['bucket']}" in init
    assert s3["config"]["endpoint"] == "minio:9000"
    for name, s in thanos_services(services).items():
        env = s.get("environment", {})
        if "objstore.config-file" in flags(command(s)):
            assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(env), name
    fs = yaml.safe_load((REPO / "thanos" / "objstore.filesystem.yml").read_text())
    assert fs == {"type": "FILESYSTEM", "config": {"directory": "data/bucket"}}


@pytest.mark.integration
def test_no_secret_in_git(services):
    for name, s in services.items():
        for key, value in (s.get("environment") or {}).items():
            if re.search(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY", key) and not key.endswith("_FILE"):
                assert re.fullmatch(r"\$\{\w+:\?[^}]+\}", str(value)), (name, key, value)
    assert ".env" in (REPO / ".gitignore").read_text().split()
    used = set(re.findall(r"\$\{(\w+)", COMPOSE.read_text()))
    example = dict(
        line.split("=", 1)
        for line in (REPO / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert used | {"PARTNER_TOKEN"} == set(example)
    tracked = subprocess.run(["git", "ls-files", ".env"], cwd=REPO, capture_output=True, text=True).stdout
    assert tracked == ""


def test_grafana_gets_what_its_provisioning_reads(services):
    g = services["grafana"]
    env = g["environment"]
    provisioning = REPO / "grafana" / "provisioning"
    wanted = {v for f in provisioning.rglob("*.yaml") for v in re.findall(r"\$\{(\w+)\}", f.read_text())}
    assert wanted <= set(env)
    assert repo_path(env["GF_PATHS_PROVISIONING"], g) == provisioning
    assert repo_path(env["GF_PATHS_CONFIG"], g) == REPO / "grafana" / "grafana.ini"
    assert repo_path(env["HOMEWATT_DASHBOARDS"], g) == REPO / "grafana" / "dashboards"
    assert env["PROMETHEUS_URL"] == "http://prometheus:9090"  # live
    query_port = flags(command(services["thanos-query"]))["http-address"][0].rsplit(":", 1)[1]
    assert env["HISTORY_URL"] == f"http://thanos-query:{query_port}"  # history, auto downsampling


def test_jobs_read_the_bucket_through_query(services):
    query_port = flags(command(services["thanos-query"]))["http-address"][0].rsplit(":", 1)[1]
    assert services["scheduler"]["environment"]["PROMETHEUS_URL"] == f"http://thanos-query:{query_port}"
    backfill = flags(command(services["backfill"]))
    assert "upload" in backfill
    assert repo_path(backfill["prometheus-config"][0], services["backfill"]) == promconfig.COMPOSE


@pytest.mark.integration
def test_the_compose_prometheus_config_runs_in_a_real_prometheus(tmp_path):
    """Prometheus loads the very file compose mounts: its rules, labels and targets."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    service = Service(
        name="prometheus-compose",
        argv=[
            "prometheus",
            f"--config.file={promconfig.COMPOSE}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        listen=("127.0.0.1", port),
        ready=http_ok(f"{url}/-/ready"),
    )
    with Supervisor(tmp_path / "logs") as sup:
        sup.run(service)
        groups = requests.get(f"{url}/api/v1/rules", timeout=10).json()["data"]["groups"]
        expected = [
            g["name"]
            for path in promconfig.PROMETHEUS_RULES
            for g in yaml.safe_load((promconfig.COMPOSE.parent / path).read_text())["groups"]
        ]
        assert sorted(g["name"] for g in groups) == sorted(expected) and "homewatt-1m" in expected
        loaded = yaml.safe_load(
            requests.get(f"{url}/api/v1/status/config", timeout=10).json()["data"]["yaml"]
        )
        assert loaded["global"]["external_labels"] == streams.stream_labels(contract.RAW_STREAM)

        def active_targets() -> list[dict[str, Any]]:  # discovery runs just after startup
            return requests.get(f"{url}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]

        targets = wait_until(active_targets, 30, "Prometheus's active targets")
        assert sorted((t["labels"]["job"], t["discoveredLabels"]["__address__"]) for t in targets) == [
            ("alertmanager", "alertmanager:9093"),
            ("homewatt-exporter", "exporter:9105"),
            ("prometheus", "localhost:9090"),
            ("pushgateway", "pushgateway:9091"),
            ("thanos-compact", "thanos-compact-quarter:10902"),
            ("thanos-compact", "thanos-compact-raw:10902"),
            ("thanos-query", "thanos-query:10902"),
            ("thanos-rule", "thanos-ruler:10902"),
            ("thanos-sidecar", "thanos-sidecar:10902"),
            ("thanos-store", "thanos-store:10902"),
        ]
        # Alerts go to compose's Alertmanager.
        (am,) = loaded["alerting"]["alertmanagers"]
        assert am["static_configs"] == [{"targets": ["alertmanager:9093"]}]


def test_dockerfile_copies_what_exists_and_runs_unprivileged():
    text = (REPO / "Dockerfile").read_text()
    froms = re.findall(r"^FROM (\S+)", text, re.M)
    assert froms[-1].startswith("python:3.11.") and re.search(r":\d+\.\d+\.\d+-", froms[-1])
    for src in re.findall(r"^COPY (?!--from)(\S+)", text, re.M):
        assert (REPO / src).exists(), src
    copied = set(re.findall(r"^COPY (?!--from)(\S+?)/? ", text, re.M))
    # Every Python package the compose services run, and the configs the code reads from the repository.
    assert {
        "homewatt",
        "exporter",
        "backfill",
        "partner_job",
        "alertmanager",
        "prometheus",
        "rules",
        "thanos",
    } <= copied
    assert re.search(r"^USER homewatt$", text, re.M)
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".env", "data", ".venv", ".git"} <= set(ignored)  # no secret or local data in the image


def test_the_pushgateway_runs_with_the_stacks_flags(services):
    assert set(PUSHGATEWAY_FLAGS) <= set(command(services["pushgateway"]))
