"""The reference partner's breakdown: rule-based disaggregation of minute energy.

It sees only what the real partner sees (a start instant and 1-minute Wh
values) and knows no ground truth.  Deterministic, no randomness.  The homes
are in France, so local time is Europe/Paris.  Steps, each taking energy out
of what is left:

1. always-on base: each day's 5th percentile of power -> `other`;
2. fridge: the typical height of small on/off steps (60-300 W), at a 33 %
   duty cycle, capped by what is left above the base;
3. water heater: off-peak plateaus at least 1.2 kW above the base, starting
   22:00-01:00 and lasting 40 minutes or more -> their flat level;
4. heating: the load above 800 W on days where it recurs in 4+ hours, one of
   them between midnight and 6:00 (or in 10+ hours);
5. cooking: excess of at least 700 W over the 2-hour median, in meal windows,
   lasting under 75 minutes;
6. laundry: daytime excess of at least 1.5 kW lasting 10-40 minutes outside
   meal windows, on at most one run per day;
7. lighting and electronics: the evening (17:00-24:00) excess that is left,
   split 45/55;
8. whatever remains -> `other`.
"""

from __future__ import annotations

import datetime as dt

import numpy as np

from homewatt.timeutil import local_seconds
from homewatt.usages import USAGES

TZ = "Europe/Paris"


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of True."""
    if not mask.any():
        return []
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True))


def _rolling_median(x: np.ndarray, width: int) -> np.ndarray:
    pad = width // 2
    padded = np.pad(x, pad, mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, width)[: x.size]
    return np.median(windows[:, ::5], axis=1)  # every 5th minute: same median, 5x cheaper


def breakdown(start: str, values: list[float | None]) -> tuple[dict[str, float], float]:
    """(usage -> share, total Wh) for minute Wh values starting at `start` (ISO 8601)."""
    t0 = int(dt.datetime.fromisoformat(start.replace("Z", "+00:00")).timestamp())
    wh = np.array([np.nan if v is None else float(v) for v in values])
    known = np.isfinite(wh)
    total_wh = float(np.nansum(wh))
    if total_wh <= 0:
        return {"other": 1.0}, 0.0
    watts = np.where(known, wh * 60.0, 0.0)
    ts = t0 + 60 * np.arange(wh.size)
    lt = local_seconds(TZ, ts)
    hour = (lt % 86400) / 3600.0
    day = lt // 86400
    energy = dict.fromkeys(USAGES, 0.0)
    left = watts.copy()

    # 1. base load, per local day
    base = np.zeros_like(watts)
    for d in np.unique(day):
        sel = (day == d) & known
        if sel.any():
            base[day == d] = np.percentile(watts[sel], 5)
    energy["other"] += float(np.minimum(base, left)[known].sum())
    left = np.maximum(left - base, 0.0)

    # 2. fridge: small steps, 1/3 duty
    steps = np.abs(np.diff(watts))
    small = steps[(steps >= 60) & (steps <= 300)]
    if small.size >= 20:
        fridge_w = float(np.median(small)) / 3.0
        fridge = np.minimum(left, fridge_w)
        energy["fridge"] += float(fridge[known].sum())
        left -= fridge

    # 3. water heater: long off-peak plateaus that start soon after the contact closes
    night = (hour >= 22) | (hour < 7)
    for a, b in _runs(night & (left >= 1200)):
        if b - a >= 40 and (hour[a] >= 22 or hour[a] < 1):
            level = float(np.percentile(left[a:b], 10))  # the heater's flat draw; heating rides on top
            energy["water_heater"] += level * (b - a)
            left[a:b] -= level

    # 4. heating: high load that recurs through the day and also at night (appliances
    #    rarely run between midnight and 6:00 once the water heater is out)
    meals = ((hour >= 6.5) & (hour < 9)) | ((hour >= 11.5) & (hour < 14.5)) | ((hour >= 18.5) & (hour < 22))
    high = left >= 800
    for d in np.unique(day):
        sel = day == d
        hours_high = np.unique(np.floor(hour[sel & high])).size
        night_high = np.unique(np.floor(hour[sel & high & (hour < 6)])).size
        if (hours_high >= 4 and night_high >= 1) or hours_high >= 10:
            part = np.where(sel & high, left, 0.0)
            energy["heating"] += float(part.sum())
            left -= part

    # 5. cooking: meal-window spikes over the local 2-hour median
    trend = _rolling_median(left, 121)
    spike = left - trend
    for a, b in _runs(meals & (spike >= 700)):
        if b - a < 75:
            energy["cooking"] += float(spike[a:b].sum())
            left[a:b] -= spike[a:b]

    # 6. laundry: one daytime heating-phase run per day, outside meals
    daytime = (hour >= 8) & (hour < 21) & ~meals
    used_days: set[int] = set()
    for a, b in _runs(daytime & (left >= 1500)):
        d = int(day[a])
        if 10 <= b - a <= 40 and d not in used_days:
            energy["laundry"] += float(left[a:b].sum())
            left[a:b] = 0.0
            used_days.add(d)

    # 7. evening: lighting and electronics
    evening = hour >= 17
    ev = float(left[evening & known].sum())
    energy["lighting"] += 0.45 * ev
    energy["electronics"] += 0.55 * ev
    left[evening] = 0.0

    # 8. the rest
    energy["other"] += float(left[known].sum())
    total_w_minutes = sum(energy.values())
    shares = {k: v / total_w_minutes for k, v in energy.items() if v > 0}
    # Round to 6 decimals and put the rounding remainder on the largest usage: sum is 1.
    shares = {k: round(v, 6) for k, v in shares.items()}
    biggest = max(shares, key=lambda k: shares[k])
    shares[biggest] = round(shares[biggest] + 1.0 - sum(shares.values()), 6)
    return shares, total_wh
