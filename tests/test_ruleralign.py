"""The Ruler's rule copies: the query_offset that puts the recording groups on the clock.

That the offset is the one the real Ruler applies is shown on the running binary
(test_thanos.py: the Ruler's readings land on whole minutes); these check the parts.
"""

from __future__ import annotations

import datetime as dt
import subprocess

import pytest

from homewatt import ruleralign
from stack.thanos import BINARY


def test_durations_parse_as_prometheus_writes_them():
    assert ruleralign.duration("15m") == dt.timedelta(minutes=15)
    assert ruleralign.duration("1h30m") == dt.timedelta(hours=1, minutes=30)
    assert ruleralign.duration("250ms") == dt.timedelta(milliseconds=250)
    for bad in ("", "15", "15 m", "1.5h", "m15"):
        with pytest.raises(ValueError, match="not a Prometheus duration"):
            ruleralign.duration(bad)


def test_the_managed_name_is_the_rulers_rewritten_copy():
    assert (
        ruleralign.managed_file("/data/", "/etc/homewatt/thanos/rules/x.rules.yml")
        == "/data/.tmp-rules/ABORT/etc/homewatt/thanos/rules/x.rules.yml"
    )


def test_only_recording_groups_get_an_offset_within_their_interval():
    doc = {
        "groups": [
            {"name": "rec", "interval": "15m", "rules": [{"record": "a:b:c", "expr": "1"}]},
            {"name": "alerts", "interval": "15m", "rules": [{"alert": "A", "expr": "1"}]},
            {"name": "default", "rules": [{"record": "a:b:d", "expr": "1"}]},
        ]
    }
    rec, alerts, default = ruleralign.aligned(doc, "/data/.tmp-rules/ABORT/x.yml")["groups"]
    assert "query_offset" not in alerts
    for group, interval in ((rec, dt.timedelta(minutes=15)), (default, dt.timedelta(minutes=1))):
        offset = ruleralign.duration(group["query_offset"])
        assert ruleralign.MIN_LAG <= offset < interval + ruleralign.MIN_LAG
        assert list(group) == [k for k in ("name", "interval", "query_offset", "rules") if k in group]
    # Another file or group name spreads differently: the offset follows the hash.
    moved = ruleralign.aligned(doc, "/data/.tmp-rules/ABORT/y.yml")["groups"][0]["query_offset"]
    assert moved != rec["query_offset"]


@pytest.mark.integration
def test_the_thanos_binary_accepts_the_docker_rulers_copies():
    files = [f"--rules={p}" for p in sorted(ruleralign.COMPOSE_DIR.glob("*.rules.yml"))]
    assert len(files) == len(ruleralign.SOURCES)
    out = subprocess.run([str(BINARY), "tools", "rules-check", *files], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stderr.count("result=SUCCESS") == len(files)
