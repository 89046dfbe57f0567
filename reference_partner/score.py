"""python -m reference_partner.score: how good is the reference partner's breakdown?

For every sensor of the fleet and a few 30-day windows across the seasons, the
minute Wh the job would send are computed from the model (no Prometheus
needed), the reference partner's breakdown is compared with the ground truth
(the model's per-appliance watts; the real household's sub-meterings), and the
mean absolute share error per usage is printed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys

import numpy as np

from homewatt import loadmodel
from homewatt.fleet import load_fleet
from homewatt.window import Window, midnight
from reference_partner.disaggregate import breakdown

DEFAULT_ENDS = ["2026-02-01", "2026-05-01", "2026-08-01", "2026-11-01"]


def truth_and_guess(sensor, window: Window) -> tuple[dict[str, float], dict[str, float]]:
    seconds = np.arange(window.start_ts, window.end_ts)
    parts = loadmodel.components(sensor, seconds)
    total = float(sum(v.sum() for v in parts.values()))
    truth = {k: float(v.sum()) / total for k, v in parts.items()}
    power = np.sum(list(parts.values()), axis=0)
    minute_wh = power[0].reshape(-1, 60).sum(axis=1) / 3600.0
    guess, _ = breakdown(window.start_utc(), minute_wh.tolist())
    return truth, guess


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m reference_partner.score", description=__doc__)
    ap.add_argument("--fleet", help="fleet file (default: the bundled fleet)")
    ap.add_argument("--ends", nargs="+", default=DEFAULT_ENDS, help="window end dates (local midnights)")
    args = ap.parse_args(argv)
    fleet = load_fleet(args.fleet)
    errors: dict[str, list[float]] = {u: [] for u in loadmodel.USAGES}
    print(f"{'sensor':8} {'window end':10} " + " ".join(f"{u[:11]:>11}" for u in loadmodel.USAGES))
    for s in fleet.sensors:
        for end in args.ends:
            fire = midnight(dt.date.fromisoformat(end), s.timezone)
            truth, guess = truth_and_guess(s, Window.ending(fire, s.timezone))
            row = []
            for u in loadmodel.USAGES:
                err = abs(guess.get(u, 0.0) - truth.get(u, 0.0))
                errors[u].append(err)
                row.append(f"{truth.get(u, 0):5.2f}/{guess.get(u, 0):5.2f}")
            print(f"{s.id:8} {end:10} " + " ".join(f"{c:>11}" for c in row))
    print("(each cell: true share / partner's share)")
    print("mean absolute share error per usage:")
    for u, errs in errors.items():
        print(f"  {u:13} {np.mean(errs):.3f}")
    print(f"  {'all usages':13} {np.mean([e for v in errors.values() for e in v]):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
