"""What a running process costs, read from /proc: the benchmarks' one copy of it."""

from __future__ import annotations

import os
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    """The live child processes of `pid` (the exporter's device reader, for one)."""
    return [int(c) for p in Path(f"/proc/{pid}/task").glob("*/children") for c in p.read_text().split()]


def cpu_seconds(pid: int, with_children: bool = False) -> float:
    """utime + stime of a process, all its threads, and of its live children if asked (a child's
    CPU is counted only while it lives: one that died takes its share with it)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    own = (int(fields[11]) + int(fields[12])) / CLK_TCK
    return own + (sum(cpu_seconds(c) for c in children(pid)) if with_children else 0.0)
