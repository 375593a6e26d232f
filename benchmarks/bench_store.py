"""The store under a replayed day: how long the flows spend in it, and how fast the queries a user runs answer.

(a) A replayed day (2018-03-01 of ../shared/data, the scan's picks) through `trading_day`, with the
    Prefect API up: every Store call is timed (its wall time, connection and commit included) and
    summed; median of 5 days after a warm-up. Next to it, the day's whole flow time.
(b) The report's and a user's queries against the store after a 15-session backtest and the day above,
    each the median of 20 runs on a read-only connection: the day's trades, the daily P&L, ranking
    quality across days, a backtest's metrics and its equity curve.
(c) The store on disk after all that (six days replayed and the backtest, each followed by its
    housekeeping): the data files (count, bytes) and the catalog file.

Run:  uv run python -m benchmarks.bench_store [--label NAME]
Writes benchmarks/results/store-<label>.json (label: "current" by default).
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from benchmarks.paths import DAILY, MINUTE, RESULTS_DIR, SHARED

DAY = date(2018, 3, 1)
STORE_METHODS = (
    "insert", "replace", "upsert", "execute", "query", "query_df", "delete_day", "migrate", "batch", "housekeep",
)  # fmt: skip

QUERIES = {
    "the day's trades": "SELECT * FROM trades WHERE trade_date = '2018-03-01' ORDER BY symbol",
    "daily P&L": "SELECT trade_date, net_pnl, win_rate FROM daily_pnl ORDER BY trade_date",
    "ranking quality across days": "SELECT ranker, horizon, avg(spearman), count(*) FROM ranking_quality GROUP BY ALL",
    "a backtest's metrics": "SELECT metric, value FROM backtest_metrics "
    "WHERE run_id = (SELECT max(run_id) FROM backtest_runs)",
    "a backtest's equity curve": "SELECT trade_date, equity, drawdown_pct FROM backtest_daily "
    "WHERE run_id = (SELECT max(run_id) FROM backtest_runs) ORDER BY trade_date",
    "the candidates that passed": "SELECT symbol, gap_pct, rel_volume FROM candidates WHERE passed ORDER BY gap_pct DESC",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", default="current")
    args = parser.parse_args(argv)
    if not MINUTE.exists():
        print(f"the recorded market data is not at {SHARED}; this benchmark needs it", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="openbell-bench-") as scratch:
        result = measure(Path(scratch))
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / f"store-{args.label}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"store time in a replayed day (median of 5): {result['store_s']:.2f} s of {result['day_s']:.2f} s "
          f"({result['store_calls']} calls; housekeeping after the close {result['housekeep_s']:.2f} s of it)")  # fmt: skip
    for name, ms in result["queries_ms"].items():
        print(f"  {name:32s} {ms:7.1f} ms")
    if "data_files" in result:
        print(f"store on disk: {result['data_files']} data files, {result['data_bytes'] / 1e6:.2f} MB; "
              f"catalog {result['catalog_bytes'] / 1e6:.2f} MB")  # fmt: skip
    print(f"wrote {out}")
    return 0


def measure(scratch: Path) -> dict:
    from prefect.settings import PREFECT_API_URL, PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    from openbell import prefect_api
    from openbell.config import RunOptions
    from openbell.research import jobs
    from openbell.research.backtest import BacktestSpec
    from openbell.store import Store

    spent = {"seconds": 0.0, "calls": 0, "by_method": {}}
    for name in STORE_METHODS:
        _time_method(Store, name, spent)
    options = RunOptions(db_path=str(scratch / "openbell.ducklake"), minute_bars=str(MINUTE), daily_bars=str(DAILY))
    api = prefect_api.open_api(None, scratch / "prefect", scratch / "server.log")
    days, store_s, calls, housekeep_s = [], [], [], []
    try:
        url = api.wait_until_ready()
        from openbell.flows.trading_day import trading_day

        with temporary_settings(updates={PREFECT_API_URL: url, PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            trading_day(trade_date=DAY, options=options)  # warm-up
            for _ in range(5):
                spent.update(seconds=0.0, calls=0, by_method={})
                started = time.perf_counter()
                trading_day(trade_date=DAY, options=options)
                days.append(time.perf_counter() - started)
                store_s.append(spent["seconds"])
                calls.append(spent["calls"])
                housekeep_s.append(spent["by_method"].get("housekeep", 0.0))
            prefect_api.drain_workers()
    finally:
        api.stop()
    settings = options.settings()
    jobs.backtest(BacktestSpec(settings, date(2018, 2, 16), date(2018, 3, 9)), report_to=scratch / "report.html")
    store = Store(settings.data.database)
    queries = {}
    for name, sql in QUERIES.items():
        timings = []
        for _ in range(20):
            started = time.perf_counter()
            store.query_df(sql, read_only=True)
            timings.append((time.perf_counter() - started) * 1000)
        queries[name] = statistics.median(timings)
    database = settings.data.database
    files = [f for f in Path(f"{database}.files").rglob("*") if f.is_file()]
    catalog = [f for f in database.parent.glob(f"{database.name}*") if f.is_file()]  # with -wal and -shm
    return {
        "data_files": len(files),
        "data_bytes": sum(f.stat().st_size for f in files),
        "catalog_bytes": sum(f.stat().st_size for f in catalog),
        "day_s": statistics.median(days),
        "store_s": statistics.median(store_s),
        "store_calls": int(statistics.median(calls)),
        "housekeep_s": statistics.median(housekeep_s),
        "queries_ms": queries,
    }


def _time_method(cls, name: str, spent: dict) -> None:
    """Count the wall time of `cls.name` (outermost calls only: a batch's inner calls are part of it)."""
    original = getattr(cls, name)
    depth = {"n": 0}

    if name == "batch":
        import contextlib

        @contextlib.contextmanager
        def timed_batch(self, *args, **kwargs):
            depth["n"] += 1
            started = time.perf_counter()
            try:
                with original(self, *args, **kwargs):
                    yield
            finally:
                depth["n"] -= 1
                if depth["n"] == 0:
                    _count(spent, name, time.perf_counter() - started)

        setattr(cls, name, timed_batch)
        return

    @functools.wraps(original)
    def timed(self, *args, **kwargs):
        if depth["n"] or getattr(self, "_batching", False):
            return original(self, *args, **kwargs)
        depth["n"] += 1
        started = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            depth["n"] -= 1
            _count(spent, name, time.perf_counter() - started)

    setattr(cls, name, timed)


def _count(spent: dict, name: str, seconds: float) -> None:
    spent["seconds"] += seconds
    spent["calls"] += 1
    spent["by_method"][name] = spent["by_method"].get(name, 0.0) + seconds


if __name__ == "__main__":
    sys.exit(main())
