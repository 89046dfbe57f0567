"""One sensor's History dashboard: server time, natively and through Thanos Query, beside the
previous design, with the goals of the issue that set them.

The tier is built as benchmarks/thanos_tiers.py builds it (by default the default backfill's
spans: 90 days at 1 s and three years of quarter-hours, for one sensor), each stream
compacted once.  Every query of grafana/dashboards/history.json, as Grafana sends it
(tests/grafana_emulation.py), is timed against Thanos Query (with the History datasource's
parameters) and against a standalone Prometheus over the same blocks, interleaved in one
run, over 30 days (the default), 1 year and 3 years.  A dashboard load sends its queries
one after another.  Two times per query:

- server: the engine's own `execTotalTime` (`stats=all`, Prometheus and Thanos alike);
- round trip: the HTTP request on localhost, JSON decoding included (a kept-alive session,
  as Grafana's).

benchmarks/history_previous.json is the History dashboard before its totals read the
counter's quarter-hour readings (commit a2e7642: every total read the 1 s counter); it is
timed over 30 days, inside the 1 s window.  Beyond it that design read the counter copied
into the quarter stream, which no longer exists, so its longer ranges would time nothing.

    python benchmarks/history_speed.py [--raw-days 90] [--history-days 1096] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.thanos_tiers import GRAFANA, SPANS, serving_tier  # noqa: E402
from homewatt.config import REPO  # noqa: E402
from stack.thanos import BINARY  # noqa: E402
from tests import grafana_emulation as ge  # noqa: E402

DESIGNS = {
    "current": REPO / "grafana" / "dashboards" / "history.json",
    "previous (1 s counter)": Path(__file__).resolve().parent / "history_previous.json",
}
DAY_BARS = "Energy per day (kWh), each bar on its local day"
# The goals, ms of server time (the "History at VictoriaMetrics speed").
GOALS = {"30 days (default)": 100.0, "1 year": 200.0, "3 years": 200.0}
DAY_BARS_GOAL, STAT_GOAL = 50.0, 10.0


def values(result: list[dict[str, Any]]) -> list[tuple[float, float]]:
    """Every (t, v) of an answer, series in label order: what must agree between servers."""
    out: list[tuple[float, float]] = []
    for series in sorted(result, key=lambda s: sorted(s["metric"].items())):
        rows = series.get("values") or [series["value"]]
        out += [(float(ts), float(v)) for ts, v in rows]
    return out


def timed(
    session: requests.Session, url: str, q: ge.Query, extra: dict[str, str] | None
) -> tuple[float, float, list[tuple[float, float]]]:
    """(server ms, round-trip ms, the answer's points) of one panel query."""
    params: dict[str, Any] = {"query": q.expr, "stats": "all", **(extra or {})}
    if q.instant:
        path, params["time"] = "query", q.end
    else:
        path = "query_range"
        params |= {"start": q.start, "end": q.end, "step": q.step}
    t0 = time.perf_counter()
    r = session.get(f"{url}/api/v1/{path}", params=params, timeout=120)
    doc = r.json()
    trip = (time.perf_counter() - t0) * 1000
    if doc.get("status") != "success":
        raise RuntimeError(f"{q.panel}: {doc.get('error')} ({q.expr})")
    # The Thanos engine reports no timings: its server time is unknown (NaN), not zero.
    server = float(doc["data"].get("stats", {}).get("timings", {}).get("execTotalTime") or "nan")
    return server * 1000, trip, values(doc["data"]["result"])


def same(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> bool:
    return len(a) == len(b) and all(
        ta == tb and abs(va - vb) <= 1e-9 * max(abs(va), abs(vb), 1.0)
        for (ta, va), (tb, vb) in zip(a, b, strict=False)
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--raw-days", type=int, default=90, help="days at 1 s (default 90)")
    ap.add_argument(
        "--history-days", type=int, default=1096, help="days of quarter-hours before (default 1096)"
    )
    ap.add_argument(
        "--runs", type=int, default=5, help="timed loads per design, range and server (default 5)"
    )
    args = ap.parse_args()
    if not BINARY.exists():
        sys.exit(f"{BINARY} is missing: `make thanos` builds it")
    argv = [
        "--raw-days",
        str(args.raw_days),
        "--history-days",
        str(args.history_days),
        "--runs",
        str(args.runs),
    ]
    print(f"cd {shlex.quote(str(REPO))} && .venv/bin/python benchmarks/history_speed.py {shlex.join(argv)}")
    started = time.monotonic()
    # (design, span, server) -> per query: lists of server ms and round-trip ms; and the panel types
    results: dict[tuple[str, str, str], dict[str, Any]] = {}
    differ: set[str] = set()
    with serving_tier(1, args.raw_days, args.history_days) as tier, requests.Session() as session:
        servers = {
            "Thanos Query": (tier["query"], GRAFANA),
            # The same Query asked to use the Thanos PromQL engine (`engine=thanos`, the per-request
            # form of --query.promql-engine).
            "Query, thanos engine": (tier["query"], {**GRAFANA, "engine": "thanos"}),
            "Prometheus": (tier["native"], None),
        }
        for design, path in DESIGNS.items():
            dashboard = json.loads(path.read_text())
            kinds = {p["title"]: p["type"] for p in dashboard["panels"]}
            for span, time_range in SPANS if design == "current" else SPANS[:1]:
                qs = ge.queries(dashboard, tier["now"], tier["sensor"], time_range)
                for server in servers:
                    results[(design, span, server)] = {
                        "panels": [q.panel for q in qs],
                        "kinds": [kinds[q.panel] for q in qs],
                        "server": [[] for _ in qs],
                        "trip": [[] for _ in qs],
                    }
                for i in range(args.runs + 1):  # the first load warms caches, not counted
                    answers: dict[str, list[list[tuple[float, float]]]] = {}
                    for server, (url, extra) in servers.items():
                        r = results[(design, span, server)]
                        answers[server] = []
                        for j, q in enumerate(qs):
                            s, t, points = timed(session, url, q, extra)
                            answers[server].append(points)
                            if i:
                                r["server"][j].append(s)
                                r["trip"][j].append(t)
                    if i == 0:
                        for server, got in answers.items():
                            for q, mine, native in zip(qs, got, answers["Prometheus"], strict=True):
                                if not same(mine, native):
                                    differ.add(f"{design}, {span}, {server}: {q.panel}")
    report(results, args.runs)
    print("\nAnswers equal to native Prometheus's (relative 1e-9):", "all" if not differ else "")
    for line in sorted(differ):
        print(f"  DIFFER: {line}")
    print(f"\ntook {time.monotonic() - started:.0f} s")


def report(results: dict[tuple[str, str, str], dict[str, Any]], runs: int) -> None:
    print(f"\nOne sensor's History dashboard, ms: median of {runs} loads (a load = its queries in sequence)")
    print(
        f"{'design':<24} {'range':<18} {'server':<21} {'queries':>7} {'server ms':>10} {'round trip':>11} {'slowest (server)':>17}  panel"
    )
    checks: list[tuple[str, float, float]] = []
    for (design, span, server), r in results.items():
        per_query = [statistics.median(x) for x in r["server"]]
        total = statistics.median([sum(load) for load in zip(*r["server"], strict=True)])
        trip = statistics.median([sum(load) for load in zip(*r["trip"], strict=True)])
        slow = max(range(len(per_query)), key=per_query.__getitem__)
        print(
            f"{design:<24} {span:<18} {server:<21} {len(per_query):>7} {total:>10.1f} {trip:>11.1f} "
            f"{per_query[slow]:>17.1f}  {r['panels'][slow]}"
        )
        if design != "current":
            continue
        checks.append((f"{server}, whole dashboard, {span}", total, GOALS[span]))
        if span == "3 years":
            (bars,) = [p for p, name in zip(per_query, r["panels"], strict=True) if name == DAY_BARS]
            checks.append((f"{server}, 3 years of per-day bars", bars, DAY_BARS_GOAL))
        if span == SPANS[0][0]:
            stats = [p for p, kind in zip(per_query, r["kinds"], strict=True) if kind == "stat"]
            checks.append((f"{server}, slowest of the {len(stats)} period stats", max(stats), STAT_GOAL))
    print("\nGoals (server ms):")
    for what, got, goal in checks:
        verdict = "n/a   " if got != got else ("met   " if got <= goal else "MISSED")
        print(f"  {verdict} {what}: {got:.1f} (goal <= {goal:.0f})")


if __name__ == "__main__":
    main()
