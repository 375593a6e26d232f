"""Where the benchmarks find the recorded market data (../shared/data) and write their results."""

from __future__ import annotations

from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_DIR = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
SHARED = PROJECT_DIR.parent / "shared" / "data"
MINUTE = SHARED / "minute_bars_2018-02-16_2018-03-09.parquet"
DAILY = SHARED / "daily_bars_2017-01-03_2018-03-09.parquet"
