"""The Thanos Ruler's rule files, with each recording group's evaluations put back on the clock.

Prometheus's rule manager, the Ruler's too, spreads the groups over their
interval: a group evaluates at `k * interval + h`, where h is the xxhash64 of the
labels {file, name} modulo the interval (rules/group.go, Group.EvalTimestamp, in
the Prometheus module the Ruler is built with).  For the 15m group h can be up to
15 minutes, so the counter's quarter-hour reading (contract.READING15M) would be
read at :07, :22, ... and a live day's total would run from 00:07 to 00:07, while the
backfill writes its readings on the quarter-hours.

A group's `query_offset` (Prometheus 2.53 and later; the Ruler's rules package
has it) makes every evaluation at time ts query at `ts - offset` and stamp its
samples there.  Setting it to h puts every reading on the calendar quarter-hour.
The hash needs the file name the Ruler hands to Prometheus's manager: the
Ruler's rewritten copy, `<data-dir>/.tmp-rules/ABORT/<rule file as given>`
(pkg/rules/manager.go in Thanos), so h is known before the Ruler starts and the
copy can carry it.  A test runs the real Ruler and checks the readings' timestamps.

Only the Ruler loads these copies: Debian's promtool 2.42 rejects `query_offset`,
so the committed files under rules/ stay without it.  `python -m
homewatt.ruleralign` writes the Docker stack's copies (thanos/rules/); `make up`
writes its own under the data dir, since the hash depends on the paths.
"""

from __future__ import annotations

import datetime as dt
import posixpath
import re
from pathlib import Path
from typing import Any

import xxhash
import yaml

from homewatt.config import REPO
from homewatt.contract import SHARD_LABEL
from homewatt.promconfig import RULER_RULES

# The strategy directory of the Ruler's rewritten copies: groups without a
# partial_response_strategy use ABORT.
STRATEGY = "ABORT"
# A reading is made at least this long after its quarter-hour, so that the sample
# scraped at that instant is stored and visible through Query when it is read.
MIN_LAG = dt.timedelta(seconds=15)
COMPOSE_DATA_DIR = "/data"  # docker-compose.yml's thanos-ruler: --data-dir
COMPOSE_MOUNT = "/etc/homewatt/thanos"  # ./thanos, mounted there
COMPOSE_DIR = REPO / "thanos" / "rules"
SOURCES = [(REPO / "prometheus" / p).resolve() for p in RULER_RULES]

# A metric name (or `{...}` after one) followed by a range: `x[5m]`, `x{a="b"}[5m]`.
_RANGE_SELECTOR = re.compile(r"(?<![\w:])([a-zA-Z_:][\w:]*)(\{[^}]*\})?(?=\[)")
_UNITS = {"ms": 1e-3, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_DURATION = re.compile(r"(\d+)(ms|[smhdwy])")


def duration(text: str) -> dt.timedelta:
    """A Prometheus duration ("15m", "1h30m")."""
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a Prometheus duration: {text!r}")
    return dt.timedelta(seconds=sum(int(n) * _UNITS[u] for n, u in parts))


def managed_file(data_dir: str, rule_file: str) -> str:
    """The name Prometheus's manager knows the file by, inside the Ruler (Go's filepath.Join)."""
    return posixpath.normpath(posixpath.join(data_dir, ".tmp-rules", STRATEGY, rule_file.lstrip("/")))


def spread(file: str, group: str, interval: dt.timedelta) -> dt.timedelta:
    """h: how far after each multiple of the interval the group evaluates (labels.Hash: sorted
    name/value pairs, each followed by 0xff)."""
    key = b"".join(part.encode() + b"\xff" for part in ("file", file, "name", group))
    interval_ns = round(interval.total_seconds() * 1e9)
    return dt.timedelta(microseconds=(xxhash.xxh64_intdigest(key) % interval_ns) / 1000)


def query_offset(file: str, group: str, interval: dt.timedelta) -> str:
    """The group's query_offset, whole milliseconds (the stamp is truncated to milliseconds,
    so the nanoseconds left over never move it off the quarter-hour)."""
    h = spread(file, group, interval)
    if h < MIN_LAG:
        h += interval  # the reading before: same instant on the clock, one interval later
    return f"{int(h.total_seconds() * 1000)}ms"


def only_shard(expr: str, shard: int) -> str:
    """`expr` with every range selector restricted to one shard's series (homewatt/shards.py).

    The Ruler reads through Query, which sees every shard; a shard's Ruler must record
    its own sensors only, or two Rulers would write the same series.  Only range
    selectors are rewritten (the recording groups use nothing else; a test checks
    that every metric in them got the matcher).
    """
    matcher = f'{SHARD_LABEL}="{shard}"'

    def restrict(m: re.Match[str]) -> str:
        inner = (m.group(2) or "{}")[1:-1].strip()
        return f"{m.group(1)}{{{inner + ', ' if inner else ''}{matcher}}}"

    return _RANGE_SELECTOR.sub(restrict, expr)


def records(path: Path) -> bool:
    """Whether a rule file has a recording group (alert-only files run in one Ruler only)."""
    return any(_recording(g) for g in (yaml.safe_load(path.read_text()) or {}).get("groups", []))


def _recording(group: dict[str, Any]) -> bool:
    return any("record" in rule for rule in group.get("rules", []))


def aligned(
    doc: dict[str, Any], file: str, default_interval: str = "1m", shard: int = 0, shards: int = 1
) -> dict[str, Any]:
    """The rule file's groups, each recording group with the query_offset that puts it on the
    clock and, with several shards, reading its own shard's series only."""
    groups = []
    for group in doc.get("groups", []):
        if _recording(group):
            interval = duration(group.get("interval", default_interval))
            offset = {"query_offset": query_offset(file, group["name"], interval)}
            rules = group["rules"]
            if shards > 1:
                rules = [{**r, "expr": only_shard(str(r["expr"]), shard)} for r in rules]
            group = {k: v for k, v in group.items() if k != "rules"} | offset | {"rules": rules}
        groups.append(group)
    return {**doc, "groups": groups}


class _Dumper(yaml.SafeDumper):
    """Multi-line expressions as literal blocks, as in the sources, not as escaped strings."""


def _str(dumper: yaml.SafeDumper, text: str) -> yaml.Node:
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|" if "\n" in text else None)


_Dumper.add_representer(str, _str)


def render(source: Path, data_dir: str, loaded_as: str, shard: int = 0, shards: int = 1) -> str:
    """The Ruler's copy of `source`, for a Ruler given `--rule-file=<loaded_as>` and `--data-dir`."""
    doc = yaml.safe_load(source.read_text())
    doc = aligned(doc, managed_file(data_dir, loaded_as), shard=shard, shards=shards)
    header = (
        f"# Generated from rules/{source.name} by homewatt/ruleralign.py (edit that, not this) for\n"
        "# the Thanos Ruler that loads it as\n"
        f"#   --rule-file={loaded_as} --data-dir={data_dir}\n"
        "# query_offset puts each recording group's evaluations on the clock (that module says why).\n"
    )
    return header + yaml.dump(doc, Dumper=_Dumper, sort_keys=False)


def write(
    source: Path, dest: Path, data_dir: str, loaded_as: str | None = None, shard: int = 0, shards: int = 1
) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(render(source, data_dir, loaded_as or str(dest.resolve()), shard, shards))
    return dest


def ruler_files(
    sources: tuple[Path, ...], dest_dir: Path, data_dir: Path, shard: int = 0, shards: int = 1
) -> tuple[Path, ...]:
    """A native Ruler's copies (`make up`, the tests), written under the data dir."""
    return tuple(
        write(s, dest_dir / s.name, str(data_dir.resolve()), shard=shard, shards=shards) for s in sources
    )


def compose_files() -> list[Path]:
    """thanos/rules/: the Docker stack's Ruler's copies, for the paths it sees in its container."""
    return [
        write(s, COMPOSE_DIR / s.name, COMPOSE_DATA_DIR, f"{COMPOSE_MOUNT}/rules/{s.name}") for s in SOURCES
    ]


if __name__ == "__main__":
    for path in compose_files():
        print(f"wrote {path}")
