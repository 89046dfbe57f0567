"""Deterministic per-second load model of a home's electricity meter.

`power(sensors, ts)` is a pure function of each sensor's configuration and the
instant: no clock, no hidden state, no dependence on call order.  That is what
lets the backfill (history) and the exporter (live) write one continuous
record with no seam: both ask the same function about different seconds.

Randomness comes from a counter-based hash (splitmix64) of (seed, stream,
index), so "random" days are reproducible and any second can be computed
without computing the ones before it.  Every appliance is modelled separately
in integer watts and the meter reads their sum, which gives ground truth per
usage for scoring the partner's breakdown.

Everything broadcasts over sensors (rows) and instants (columns): the backfill
asks one sensor for 86,400 seconds, the exporter asks 10,000 sensors for one.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from homewatt import replay
from homewatt.contract import DAY, HOUR, MINUTE, QUARTER_HOUR
from homewatt.fleet import Sensor
from homewatt.timeutil import local_seconds
from homewatt.usages import USAGES

# Bump when the model's output changes: on-disk caches of daily totals key on it.
MODEL_VERSION = 1

_TWO_PI = 2 * np.pi

# Hash streams: one per random quantity, so adding one never shifts another.
(
    _S_WEATHER,
    _S_WH_START,
    _S_WH_DRAW,
    _S_FRIDGE,
    _S_BREAKFAST,
    _S_LUNCH,
    _S_LUNCH_T,
    _S_DINNER,
    _S_DINNER_T,
    _S_WASH,
    _S_WASH_T,
    _S_DISH,
    _S_DISH_T,
    _S_LIGHT,
    _S_TV,
    _S_TV_END,
    _S_NOISE,
    _S_PHASE,
    _S_WEEKEND_TV,
) = range(1, 20)

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLD = np.uint64(0x9E3779B97F4A7C15)
_STREAM = np.uint64(0xD6E8FEB86659FD93)


def _splitmix(x: np.ndarray) -> np.ndarray:
    # In place after the first step: the noise hashes every (home, second), and fewer
    # temporaries make that a good part faster.
    with np.errstate(over="ignore"):
        z = x + _GOLD
        z ^= z >> np.uint64(30)
        z *= _M1
        z ^= z >> np.uint64(27)
        z *= _M2
        z ^= z >> np.uint64(31)
        return z


def _hash(seed: np.ndarray, stream: int, index: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        key = _splitmix(seed.astype(np.uint64) * _STREAM + np.uint64(stream))
        return _splitmix(key ^ index.astype(np.int64).view(np.uint64))


def _uniform(seed: np.ndarray, stream: int, index: np.ndarray) -> np.ndarray:
    """Uniform [0, 1) per (seed, stream, index), broadcast like seed × index."""
    return (_hash(seed, stream, index) >> np.uint64(11)).astype(np.float64) * 2.0**-53


class _Params:
    """Sensor configuration as (S, 1) columns, so formulas broadcast against (1, T) time."""

    def __init__(self, sensors: tuple[Sensor, ...]):
        def col(values: Sequence[float], dtype: type = np.float64) -> np.ndarray:
            return np.asarray(values, dtype=dtype).reshape(-1, 1)

        self.n = len(sensors)
        self.seed = col([s.seed for s in sensors], np.int64)
        self.occupants = col([s.occupants for s in sensors])
        self.base_w = col([s.base_w for s in sensors])
        self.noise_w = col([s.noise_w for s in sensors], np.int64)
        self.fridge_w = col([s.fridge_w for s in sensors])
        self.cooking_w = col([s.cooking_w for s in sensors])
        self.lighting_w = col([s.lighting_w for s in sensors])
        self.electronics_w = col([s.electronics_w for s in sensors])
        self.wash_p = col([s.washing_per_week / 7 for s in sensors])
        self.dish_p = col([s.dishwasher_per_week / 7 for s in sensors])
        self.lunch_p = col([s.home_at_lunch for s in sensors])
        h = [s.heating for s in sensors]
        self.is_electric = col([x.type == "electric" for x in h], bool)
        self.is_heat_pump = col([x.type == "heat_pump" for x in h], bool)
        self.heat_rated = col([x.rated_w for x in h])
        self.heat_loss = col([x.loss_w_per_k for x in h])
        self.sp_day = col([x.setpoint_c for x in h])
        self.sp_night = col([x.night_setpoint_c for x in h])
        wh = [s.water_heater for s in sensors]
        self.wh_w = col([w.power_w if w else 0 for w in wh])
        self.wh_litres = col([w.litres if w else 0 for w in wh])
        # Fixed per-sensor quantities: fridge cycle length and cycling phases.
        u = _uniform(self.seed, _S_PHASE, np.arange(4))
        self.fridge_period = np.rint(2400 + 1200 * u[:, :1]).astype(np.int64)
        self.phase = np.rint(u[:, 1:2] * 100_000).astype(np.int64)
        self.wh_contact = np.rint(60 + 540 * u[:, 2:3]).astype(np.int64)


@functools.lru_cache(maxsize=64)
def _params(sensors: tuple[Sensor, ...]) -> _Params:
    return _Params(sensors)


def _window(sod: np.ndarray, start: np.ndarray | int, dur: np.ndarray | int) -> np.ndarray:
    return (sod >= start) & (sod < start + dur)


def _group(sensors: Sensor | Sequence[Sensor]) -> tuple[Sensor, ...]:
    group = (sensors,) if isinstance(sensors, Sensor) else tuple(sensors)
    if len({s.timezone for s in group}) != 1:
        raise ValueError("sensors computed together must share one timezone")
    return group


# The outdoor temperature's daily swing (coldest before dawn), one value per second of day.
_DAILY_SWING = -4.0 * np.cos(_TWO_PI * (np.arange(DAY) - 5 * HOUR) / DAY)


def _secs(x: np.ndarray | float) -> np.ndarray:
    return np.rint(x).astype(np.int64)


@dataclass(frozen=True)
class _Day:
    """One local day of a group of homes: what every usage's draw depends on.

    `t` and `sod` are (1, T): UTC seconds and local second of day; `tt` adds each
    home's phase for cycling appliances.  A usage only some homes have that day
    (heating by type, a washing day) is computed for those rows alone (`rows`).
    """

    p: _Params
    day: int
    t: np.ndarray
    sod: np.ndarray
    weekend: bool
    season: float  # 1 mid-January, -1 mid-July
    day_mean: float  # the day's mean outdoor temperature, °C
    outdoor: np.ndarray

    @classmethod
    def of(cls, p: _Params, day: int, t: np.ndarray, sod: np.ndarray) -> _Day:
        season = float(np.cos(_TWO_PI * (day - 15) / 365.2425))
        weather = (
            float(_uniform(np.zeros((1, 1), np.int64), _S_WEATHER, np.array([[day]]))[0, 0]) - 0.5
        ) * 6.0
        day_mean = 11.5 - 8.0 * season + weather
        return cls(
            p=p,
            day=day,
            t=t,
            sod=sod,
            weekend=((day + 3) % 7) >= 5,  # 1970-01-01 was a Thursday
            season=season,
            day_mean=day_mean,
            outdoor=day_mean + _DAILY_SWING[sod],
        )

    def u(self, stream: int, d: int | None = None) -> np.ndarray:
        """Each home's uniform draw of `stream` for day `d` (default: this day), (S, 1)."""
        return _uniform(self.p.seed, stream, np.array([[self.day if d is None else d]]))

    @cached_property
    def tt(self) -> np.ndarray:
        return self.t + self.p.phase

    def cycle(self, period: int, rows: np.ndarray | slice = slice(None)) -> np.ndarray:
        """`tt % period` for the homes `rows`, (R, T), as the sum of the two remainders folded
        once: the same integers (both terms are non-negative), without an (R, T) modulo."""
        r = (self.t % period) + (self.p.phase[rows] % period)
        r[r >= period] -= period
        return r

    def lunch_at_home(self) -> np.ndarray:
        return self.u(_S_LUNCH) < (0.9 if self.weekend else self.p.lunch_p)


def _heating(d: _Day) -> np.ndarray:
    """Heat demand from the indoor/outdoor gap, on days whose mean is below 15 °C;
    convectors cycle at full power with a thermostat duty, a heat pump modulates with a
    temperature-dependent COP."""
    p = d.p
    heating = np.zeros((p.n, d.t.shape[1]))
    if d.day_mean >= 15.0:  # households switch heating off on warm days
        return heating
    awake = _window(d.sod, 6 * HOUR + 30 * MINUTE, 16 * HOUR)

    def demand(rows: np.ndarray) -> np.ndarray:
        setpoint = np.where(awake, p.sp_day[rows], p.sp_night[rows])
        return np.clip(setpoint - 2.0 - d.outdoor, 0.0, None) * p.heat_loss[rows]

    rows = np.flatnonzero(p.is_electric)
    if rows.size:
        rated = p.heat_rated[rows]
        duty = np.clip(demand(rows) / np.maximum(rated, 1.0), 0.0, 1.0)
        heating[rows] = np.where(d.cycle(QUARTER_HOUR, rows) < duty * QUARTER_HOUR, rated, 0.0)
    rows = np.flatnonzero(p.is_heat_pump)
    if rows.size:
        rated = p.heat_rated[rows]
        cop = np.clip(2.8 + 0.09 * d.outdoor, 1.8, 4.5)
        need = np.minimum(demand(rows) / cop, rated)
        floor = 0.3 * rated
        cycling = d.cycle(1200, rows) < np.clip(need / np.maximum(floor, 1.0), 0, 1) * 1200
        heating[rows] = np.where(need >= floor, need, np.where(cycling, floor, 0.0))
    return heating


def _water_heater(d: _Day) -> np.ndarray:
    """The off-peak contact closes at 22:00 (+ a per-home delay); it heats back what the
    day drew, longer in winter (colder inlet water), at most until 06:00."""
    p, sod = d.p, d.sod
    water_heater = np.zeros((p.n, d.t.shape[1]))
    if not p.wh_w.any():
        return water_heater
    night = np.where(sod >= 22 * HOUR, d.day, d.day - 1)
    since_22 = np.where(sod >= 22 * HOUR, sod - 22 * HOUR, sod + 2 * HOUR)
    for day in (d.day - 1, d.day):
        draw = (0.15 + 0.35 * d.u(_S_WH_DRAW, day)) * np.minimum(p.occupants / 3.0, 1.5)
        joules = p.wh_litres * 4186.0 * 45.0 * draw * (1.0 + 0.15 * d.season) + 3.6e6
        start = p.wh_contact + _secs(d.u(_S_WH_START, day) * 600)
        dur = np.minimum(_secs(joules / np.maximum(p.wh_w, 1.0)), 8 * HOUR - start)
        on = (night == day) & _window(since_22, start, dur)
        water_heater += np.where(on, p.wh_w, 0.0)
    return water_heater


def _fridge(d: _Day) -> np.ndarray:
    """Compressor cycles, longer duty in summer, with a 3 s start-up inrush."""
    p = d.p
    fphase = d.tt % p.fridge_period
    fduty = _secs((0.30 - 0.08 * d.season + 0.06 * d.u(_S_FRIDGE)) * p.fridge_period)
    return p.fridge_w * ((fphase < fduty) + 2.0 * (fphase < 3))


def _cooking(d: _Day) -> np.ndarray:
    """A kettle at breakfast, lunch on weekends or when someone is home, dinner; hobs
    cycle on their own thermostat (80 s out of 120 s)."""
    sod = d.sod
    breakfast = 6 * HOUR + 45 * MINUTE + (90 * MINUTE if d.weekend else 0) + _secs(d.u(_S_BREAKFAST) * 2700)
    dinner_u = d.u(_S_DINNER_T)
    lunch = 12 * HOUR + _secs(d.u(_S_LUNCH_T) * HOUR)
    dinner = 19 * HOUR + _secs(dinner_u * 90 * MINUTE)
    meals = (d.lunch_at_home() & _window(sod, lunch, _secs(15 * MINUTE + dinner_u * 30 * MINUTE))) | (
        (d.u(_S_DINNER) < 0.92) & _window(sod, dinner, _secs(20 * MINUTE + dinner_u * 40 * MINUTE))
    )
    cooking = np.where(_window(sod, breakfast, 180), 2000.0, 0.0)
    return cooking + np.where(meals & (d.cycle(120) < 80), d.p.cooking_w, 0.0)


def _programme(elapsed: np.ndarray, steps: tuple[tuple[int, float | np.ndarray], ...]) -> np.ndarray:
    """An appliance's programme `elapsed` seconds after its start: each step's watts until its
    second, nothing before the start or after the last step."""
    until = [elapsed < 0, *(elapsed < end for end, _ in steps)]
    return np.select(until, [0.0, *(watts for _, watts in steps)], 0.0)


def _laundry(d: _Day) -> np.ndarray:
    """A washing machine cycle (heat, drum, spin) on some days."""
    laundry = np.zeros((d.p.n, d.t.shape[1]))
    rows = np.flatnonzero(d.u(_S_WASH) < d.p.wash_p)
    if rows.size:
        wash_t = d.sod - (8 * HOUR + 30 * MINUTE + _secs(d.u(_S_WASH_T)[rows] * 11 * HOUR))
        drum = np.where(d.cycle(60, rows) < 40, 300.0, 80.0)
        laundry[rows] = _programme(wash_t, ((1200, 2000.0), (6000, drum), (6600, 500.0)))
    return laundry


def _lighting(d: _Day) -> np.ndarray:
    """When people are up and the sun is down (day length follows the season; solar
    noon in Paris is about 11:50 UTC)."""
    sod = d.sod
    half_day = _secs((12.2 - 4.0 * d.season) * HOUR / 2)
    dark = np.abs(d.t % DAY - (11 * HOUR + 50 * MINUTE)) > half_day
    up = _window(sod, 6 * HOUR + 30 * MINUTE, 2 * HOUR) | _window(sod, 17 * HOUR, 6 * HOUR + 30 * MINUTE)
    if d.weekend:
        up |= _window(sod, 8 * HOUR, 16 * HOUR)
    return np.where(dark & up, np.rint(d.p.lighting_w * (0.6 + 0.8 * d.u(_S_LIGHT))), 0.0)


def _electronics(d: _Day) -> np.ndarray:
    """TV or computer in the evening, weekend afternoons, home office days."""
    sod = d.sod
    start = 19 * HOUR + 30 * MINUTE + _secs(d.u(_S_TV) * 30 * MINUTE)
    tv = _window(sod, start, 3 * HOUR + _secs(d.u(_S_TV_END) * HOUR))
    if d.weekend:
        tv = tv | ((d.u(_S_WEEKEND_TV) < 0.5) & _window(sod, 14 * HOUR, 3 * HOUR))
    electronics = np.where(tv, d.p.electronics_w, 0.0)
    if not d.weekend:
        home_office = d.lunch_at_home() & _window(sod, 9 * HOUR, 8 * HOUR + 30 * MINUTE)
        electronics += np.where(home_office, 60.0, 0.0)
    return electronics


def _other(d: _Day) -> np.ndarray:
    """Always-on base load with meter-level noise, and the dishwasher."""
    p = d.p
    noise = (_hash(p.seed, _S_NOISE, d.t) % (2 * p.noise_w + 1).astype(np.uint64)).astype(np.int64)
    other = p.base_w + (noise - p.noise_w)
    rows = np.flatnonzero(d.u(_S_DISH) < p.dish_p)
    if rows.size:
        dish_t = d.sod - (21 * HOUR + _secs(d.u(_S_DISH_T)[rows] * HOUR))
        other[rows] += _programme(dish_t, ((1500, 1800.0), (4800, 60.0), (5700, 1800.0)))
    return other


_USAGE_MODELS = {
    "water_heater": _water_heater,
    "heating": _heating,
    "fridge": _fridge,
    "cooking": _cooking,
    "laundry": _laundry,
    "lighting": _lighting,
    "electronics": _electronics,
    "other": _other,
}


def _day(p: _Params, day: int, t: np.ndarray, sod: np.ndarray) -> dict[str, np.ndarray]:
    """Watts per usage for instants that all fall on one local day.

    Working one local day at a time keeps every daily draw (dinner time, laundry
    day, ...) a (S, 1) column instead of a per-instant gather, which is most of the
    model's speed.  `t` and `sod` are (1, T): UTC seconds and local second of day.
    """
    d = _Day.of(p, day, t, sod)
    return {usage: model(d) for usage, model in _USAGE_MODELS.items()}


_Parts = dict[str, np.ndarray]  # watts per usage, (S, T)


def _local_days(group: tuple[Sensor, ...], t: np.ndarray) -> Iterator[tuple[np.ndarray | slice, _Parts]]:
    """Each local day's instants among `t` (a slice or an index array) and their watts per usage."""
    p = _params(group)
    lt = local_seconds(group[0].timezone, t)
    lday = lt // DAY
    for day in np.unique(lday):
        idx = np.flatnonzero(lday == day)
        sel: np.ndarray | slice = slice(None) if idx.size == t.size else idx
        yield sel, _day(p, int(day), t[sel].reshape(1, -1), (lt[sel] - day * DAY).reshape(1, -1))


def _synthetic(group: tuple[Sensor, ...], t: np.ndarray) -> dict[str, np.ndarray]:
    out = {k: np.empty((len(group), t.size), dtype=np.int64) for k in USAGES}
    for sel, parts in _local_days(group, t) if t.size else ():
        for k, v in parts.items():
            out[k][:, sel] = np.rint(v)
    return out


def _synthetic_power(group: tuple[Sensor, ...], t: np.ndarray) -> np.ndarray:
    """The meter's reading, the sum of `_synthetic`'s usages, without keeping them: each is
    rounded and added in floats, exact for integers this size, and converted once.  The
    history's quarter-hours of three years are this sum over every second."""
    out = np.empty((len(group), t.size), dtype=np.int64)
    for sel, parts in _local_days(group, t) if t.size else ():
        total = np.zeros((len(group), parts["other"].shape[1]))
        for v in parts.values():
            total += np.rint(v)
        out[:, sel] = total
    return out


def _replayed(sensor: Sensor, t: np.ndarray) -> dict[str, np.ndarray]:
    if sensor.replay is None:
        raise ValueError(f"{sensor.id} is a modelled home, not a replayed one")
    data = replay.load(sensor.replay.dataset)
    m = replay.minute_index(sensor.replay.start_ts, len(data), t)
    return {k: (data.parts[k][m] if k in data.parts else np.zeros(t.size, np.int64)) for k in USAGES}


def components(sensors: Sensor | Sequence[Sensor], ts: np.ndarray | Sequence[int]) -> dict[str, np.ndarray]:
    """Integer watts drawn by each usage, shape (sensors, instants); the meter reads their sum."""
    group = _group(sensors)
    t = np.asarray(ts, dtype=np.int64).ravel()
    replayed = [i for i, s in enumerate(group) if s.replay is not None]
    if not replayed:
        return _synthetic(group, t)
    out = {k: np.zeros((len(group), t.size), dtype=np.int64) for k in USAGES}
    synthetic = [i for i, s in enumerate(group) if s.replay is None]
    if synthetic:
        for k, v in _synthetic(tuple(group[i] for i in synthetic), t).items():
            out[k][synthetic] = v
    for i in replayed:
        for k, v in _replayed(group[i], t).items():
            out[k][i] = v
    return out


def available(sensors: Sensor | Sequence[Sensor], ts: np.ndarray | Sequence[int]) -> np.ndarray:
    """Whether each sensor has a reading at each instant, (S, T) bool.

    Always true for modelled homes; false during a replayed household's missing
    minutes (their power reads 0 so the counter stands still there).
    """
    group = _group(sensors)
    t = np.asarray(ts, dtype=np.int64).ravel()
    out = np.ones((len(group), t.size), dtype=bool)
    for i, s in enumerate(group):
        if s.replay is not None:
            data = replay.load(s.replay.dataset)
            out[i] = data.valid[replay.minute_index(s.replay.start_ts, len(data), t)]
    return out


def power(sensors: Sensor | Sequence[Sensor], ts: np.ndarray | Sequence[int]) -> np.ndarray:
    """Integer watts the meter reads at each second; 1-D for one sensor, (S, T) for several."""
    group = _group(sensors)
    if any(s.replay is not None for s in group):
        total: np.ndarray = functools.reduce(np.add, components(group, ts).values())
    else:
        total = _synthetic_power(group, np.asarray(ts, dtype=np.int64).ravel())
    return total[0] if isinstance(sensors, Sensor) else total
