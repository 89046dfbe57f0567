"""OpenMetrics text for promtool, written at numpy speed.

A 90-day per-second backfill is ~93 M lines; formatting them one by one in
Python would dominate the run.  Every line of a series has the same shape, so
each series becomes a fixed-width byte matrix: the label prefix is copied in,
the digits of the value and of the timestamp are computed column by column.
Values are zero-padded to a fixed width ("00001234"); Prometheus parses them as
plain decimal numbers.
"""

from __future__ import annotations

import numpy as np

_ZERO = ord("0")


def _digits(values: np.ndarray, width: int) -> np.ndarray:
    """(N, width) ASCII digits of non-negative integers, zero-padded."""
    v = values.astype(np.int64, copy=True)
    if v.size and (v.min() < 0 or v.max() >= 10**width):
        raise ValueError(f"value out of range for {width} digits")
    out = np.empty((v.size, width), dtype=np.uint8)
    for col in range(width - 1, -1, -1):
        out[:, col] = v % 10 + _ZERO
        v //= 10
    return out


def int_width(values: np.ndarray) -> int:
    return max(1, len(str(int(values.max())))) if values.size else 1


def series_lines(prefix: str, values: np.ndarray, timestamps: np.ndarray, scale: int = 0) -> bytes:
    """Lines `prefix VALUE TIMESTAMP` for integer values (or fixed-point with `scale` decimals).

    `values` are integers; with scale > 0 they are printed as value / 10**scale
    (e.g. scale 3: 1234567 -> 1234.567).  Timestamps are integer seconds.
    """
    n = values.size
    if n == 0:
        return b""
    p = prefix.encode() + b" "
    vw = max(int_width(values), scale + 1)
    tw = int_width(timestamps)
    width = len(p) + vw + (1 if scale else 0) + 1 + tw + 1
    buf = np.empty((n, width), dtype=np.uint8)
    buf[:, : len(p)] = np.frombuffer(p, dtype=np.uint8)
    col = len(p)
    digits = _digits(values, vw)
    if scale:
        int_part = vw - scale
        buf[:, col : col + int_part] = digits[:, :int_part]
        buf[:, col + int_part] = ord(".")
        buf[:, col + int_part + 1 : col + vw + 1] = digits[:, int_part:]
        col += vw + 1
    else:
        buf[:, col : col + vw] = digits
        col += vw
    buf[:, col] = ord(" ")
    buf[:, col + 1 : col + 1 + tw] = _digits(timestamps, tw)
    buf[:, -1] = ord("\n")
    return buf.tobytes()


def family_header(name: str, kind: str, help_text: str, unit: str | None = None) -> bytes:
    lines = [f"# TYPE {name} {kind}", f"# HELP {name} {help_text}"]
    if unit:
        lines.append(f"# UNIT {name} {unit}")
    return ("\n".join(lines) + "\n").encode()


EOF_MARK = b"# EOF\n"
