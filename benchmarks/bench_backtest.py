"""Backtests and sweeps as whole jobs, each next to a reference timed in the same run.

(a) The large synthetic workload (500 symbols x 20 sessions x 390 bars, benchmarks/bench_replay.py's)
    as a backtest of every symbol every session, from the Parquet file to the metrics
    (`research.backtest.run_backtest`: read, lay out, size on the account, fill and exit, MFE/MAE,
    metrics). Reference: a plain numpy whole job in this file: read the Parquet, lay out the sessions
    (bench_replay.load_workload), find the exits (bench_replay.numpy_replay), P&L and the equity curve.
    Best of 3 each, in this process. Peak memory: each job runs once more in a fresh process that
    samples how far its resident memory grew, next to the size of the bars the engine holds.
(b) `openbell backtest` of the 15 recorded sessions of ../shared/data (the scan over the full daily
    file each morning), from the CLI in a fresh process, as a user runs it (median of 3).
(c) Sweeps on the recorded sessions: `openbell sweep` with 100 combinations next to one backtest of the
    same range, both whole jobs in fresh processes.

Run:  uv run python -m benchmarks.bench_backtest      (about 2 minutes; or: make bench)
Prints a table and writes benchmarks/results/backtest.json.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np

from benchmarks import bench_replay  # the workload and its numpy rule
from benchmarks.paths import DAILY, MINUTE, PROJECT_DIR, RESULTS_DIR

ALLOCATION = 10_000

# A fresh process that measures its own resident memory while the job runs (sampled every 2 ms).
PEAK_MEMORY = """
import sys, threading, time
from benchmarks import bench_backtest  # found from the working directory, the project root

def resident_mb():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20

job = bench_backtest.job(sys.argv[1])  # imports and arguments first
peak, done = [0.0], [False]
def watch():
    while not done[0]:
        peak[0] = max(peak[0], resident_mb())
        time.sleep(0.002)
threading.Thread(target=watch, daemon=True).start()
before = resident_mb()
started = time.perf_counter()
job()
seconds = time.perf_counter() - started
done[0] = True
print(f"RESULT {seconds} {max(peak[0], resident_mb()) - before}")
"""


def job(which: str):
    """The whole job `which` ("openbell" or "numpy") on the workload, ready to call."""
    minute = bench_replay.workload_minute_file(bench_replay.N_SYMBOLS)
    if which == "numpy":
        return lambda: numpy_whole_job(minute)
    from openbell.research.backtest import run_backtest

    spec = _workload_spec(minute)
    return lambda: run_backtest(spec, run_id="bench")


def _workload_spec(minute: Path):
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from openbell.config import RunOptions
    from openbell.research.backtest import BacktestSpec

    symbols = tuple(sorted(pc.unique(pq.read_table(minute, columns=["symbol"]).column("symbol")).to_pylist()))
    daily = minute.parent / "daily_bars.parquet"
    settings = RunOptions(minute_bars=str(minute), daily_bars=str(daily), starting_equity=10_000_000).settings()
    return BacktestSpec(settings, date(2025, 1, 1), date(2025, 12, 31), symbols)


def main() -> int:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    results = {"measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cpu_count": os.cpu_count()}
    results["workload"] = bench_workload()
    if MINUTE.exists() and DAILY.exists():
        with tempfile.TemporaryDirectory(prefix="openbell-bench-") as scratch:
            results["recorded"] = bench_recorded(Path(scratch))
    (RESULTS_DIR / "backtest.json").write_text(json.dumps(results, indent=2) + "\n")
    _print(results)
    print(f"\nwrote {RESULTS_DIR / 'backtest.json'}")
    return 0


# -- (a) the large synthetic workload ----------------------------------------------------------------


def bench_workload() -> dict:
    from openbell.research.backtest import run_backtest

    minute = bench_replay.workload_minute_file(bench_replay.N_SYMBOLS)
    spec = _workload_spec(minute)
    openbell_s, result = _best_of(lambda: run_backtest(spec, run_id="bench"))
    numpy_s, reference = _best_of(lambda: numpy_whole_job(minute))
    bars_mb = reference["bars"] * (4 * 8 + 4) / 2**20  # the engine's arrays: four int64 prices and an int32 minute
    memory = {which: _fresh_process(which) for which in ("openbell", "numpy")}
    return {
        "bars": int(reference["bars"]),
        "sessions": int(reference["sessions"]),
        "trades": len(result.trades),
        "openbell_s": openbell_s,
        "numpy_s": numpy_s,
        "ratio": openbell_s / numpy_s,
        "same_total_pnl": bool(abs(float(result.trades["pnl"].sum()) - reference["pnl"]) < 0.005),
        "bars_in_memory_mb": bars_mb,
        "fresh_process": memory,
    }


def _fresh_process(which: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", PEAK_MEMORY, which],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        check=True,
    )
    _, seconds, grew = next(line for line in done.stdout.splitlines() if line.startswith("RESULT")).split()
    return {"seconds": float(seconds), "peak_memory_growth_mb": float(grew)}


def numpy_whole_job(minute: Path) -> dict:
    """The reference: read, lay out, exits by the numpy rule, P&L per session and per day, the equity curve."""
    workload = bench_replay.load_workload(minute)
    dense = bench_replay.dense_bars(workload.bars)
    entry = dense.open[:, 0]
    shares = np.where(entry > 0, ALLOCATION * bench_replay.UNITS // np.maximum(entry, 1), 0)
    # The engine rounds the budget at the opening price to the tick first (as_price); so does this.
    replayed = bench_replay.numpy_replay(dense, shares)
    pnl = np.where(dense.present[:, 0], replayed.pnl, 0) / bench_replay.UNITS  # filled: a 09:30 bar
    day = (workload.session_day - workload.session_day.min()).astype(np.int64)
    equity = 10_000_000 + np.cumsum(np.bincount(day, weights=pnl))
    returns = np.diff(equity, prepend=10_000_000) / np.concatenate(([10_000_000], equity[:-1]))
    return {
        "bars": workload.bars.n_bars,
        "sessions": len(workload.bars.starts),
        "pnl": float(pnl.sum()),
        "sharpe": float(returns.mean() / returns.std(ddof=1) * np.sqrt(252)),
    }


# -- (b), (c) the recorded sessions from the CLI ---------------------------------------------------


def bench_recorded(scratch: Path) -> dict:
    files = ["--bars", str(MINUTE), "--daily", str(DAILY), "--start", "2018-02-16", "--end", "2018-03-09"]
    backtests = [_cli(["backtest", *files, "--db", str(scratch / f"b{i}.ducklake")]) for i in range(3)]
    sweep = _cli(["sweep", *files, "--db", str(scratch / "s.ducklake"), "--target-pct", "1:3.25:0.25", "--stop-pct",
                  "0.5:2.75:0.25"])  # fmt: skip  # 10 x 10 = 100 combinations
    sweep_1000 = _cli(["sweep", *files, "--db", str(scratch / "s2.ducklake"), "--target-pct", "1:5.95:0.1", "--stop-pct",
                       "0.5:2.4:0.1"])  # fmt: skip  # 50 x 20 = 1,000 combinations
    return {
        "backtest_15_sessions_s": statistics.median(backtests),
        "backtest_runs_s": backtests,
        "sweep_100_s": sweep,
        "sweep_1000_s": sweep_1000,
    }


def _cli(args: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "openbell.cli", *args], cwd=PROJECT_DIR, check=True, capture_output=True)
    return time.perf_counter() - started


def _best_of(work, repeats: int = 3):
    best, result = None, None
    for _ in range(repeats):
        started = time.perf_counter()
        result = work()
        seconds = time.perf_counter() - started
        best = seconds if best is None else min(best, seconds)
    return best, result


def _print(r: dict) -> None:
    w = r["workload"]
    print(f"\n(a) {w['sessions']:,} sessions, {w['bars']:,} bars, every symbol every session ({w['trades']:,} trades)")
    print(f"    openbell backtest, Parquet to metrics (best of 3)   {w['openbell_s']:.2f} s")
    print(f"    numpy whole job, same run (best of 3)               {w['numpy_s']:.2f} s   ratio {w['ratio']:.2f}x")
    print(f"    same total P&L as the reference                      {'yes' if w['same_total_pnl'] else 'NO'}")
    for which, m in w["fresh_process"].items():
        grew, bars = m["peak_memory_growth_mb"], w["bars_in_memory_mb"]
        print(f"    {which}, fresh process: {m['seconds']:.2f} s, resident memory grew {grew:.0f} MB (bars {bars:.0f} MB)")
    if "recorded" in r:
        c = r["recorded"]
        print("(b) openbell backtest, 15 recorded sessions, full daily scan, fresh process")
        print(f"    median of 3                                          {c['backtest_15_sessions_s']:.2f} s")
        print("(c) openbell sweep over the same sessions, fresh process")
        print(f"    100 combinations                                     {c['sweep_100_s']:.2f} s "
              f"({c['sweep_100_s'] / c['backtest_15_sessions_s']:.2f}x one backtest)")  # fmt: skip
        print(f"    1,000 combinations                                   {c['sweep_1000_s']:.2f} s")


if __name__ == "__main__":
    sys.exit(main())
