"""Benchmark of the replay engine: minute bars per second next to a plain numpy version of the same rule.

A synthetic market of 500 symbols x 20 sessions of one-minute bars (3.9M bars), each session bought
at the open and exited at +2.6% / -0.9% or liquidated at 15:45. `openbell.core.backtest.replay_sessions`
is timed next to a plain numpy version of the same rule written in this file, and the two are checked
to agree session by session. (A day through the flows: benchmarks/bench_day.py.)

Run:  uv run python -m benchmarks.bench_replay [--quick]
      (--quick: 50 symbols and one timed repetition, for a fast sanity check)
Prints a table and writes benchmarks/results/latest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from openbell.calendar import sessions_between
from openbell.core.backtest import FillCosts, SessionBars, SessionResults, replay_sessions
from openbell.core.exits import ExitPolicy
from openbell.core.prices import to_units
from openbell.venues.synthetic import generate_synthetic_market

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_DIR = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"

# The workload of (a).
SEED = 11
N_SYMBOLS, N_SYMBOLS_QUICK = 500, 50
N_SESSIONS = 20
FIRST_SESSION = date(2025, 3, 3)
HISTORY_SESSIONS = 25
SHARES = 100
LIQUIDATION_MINUTE = 15 * 60 + 45
REPEATS, REPEATS_QUICK = 5, 1

# Targets from the issue.
TARGET_BARS_PER_S = 2_000_000
TARGET_MAX_RATIO = 3.0

# The rule as the numpy reference sees it, in integer arithmetic on $0.0001 units.
UNITS = 10_000  # $0.0001 units per dollar
OPEN_MINUTE = 9 * 60 + 30
TARGET_PER_MILLE, STOP_PER_MILLE = 1026, 991  # +2.6%, -0.9%
COMMISSION_MIN_UNITS, COMMISSION_PER_SHARE_UNITS = 1 * UNITS, 50  # max($1, $0.005 x shares)
TARGET_CODE, STOP_CODE, EOD_CODE = 1, 2, 3  # exit codes, the same numbers the engine reports


# -- (a) the workload --------------------------------------------------------------------------


def workload_minute_file(n_symbols: int) -> Path:
    """The minute Parquet of the workload, generated once per set of parameters and cached."""
    folder = RESULTS_DIR / "workload" / f"seed{SEED}-symbols{n_symbols}-sessions{N_SESSIONS}-history{HISTORY_SESSIONS}"
    minute_file = folder / "minute_bars.parquet"
    if not minute_file.exists():
        sessions = sessions_between(FIRST_SESSION, date(FIRST_SESSION.year, 12, 31))[:N_SESSIONS]
        print(f"generating the workload: {n_symbols} symbols x {len(sessions)} sessions into {folder} ...", flush=True)
        market = generate_synthetic_market(
            folder,
            seed=SEED,
            n_symbols=n_symbols,
            minute_sessions=sessions,
            history_sessions=HISTORY_SESSIONS,
            missing_minute_rate=0.0,
            include_close_auction=False,
        )
        minute_file = market.minute_path
    return minute_file


@dataclass(frozen=True, slots=True)
class Workload:
    bars: SessionBars
    session_day: np.ndarray  # datetime64[D], one per session
    session_symbol: np.ndarray  # str, one per session


def load_workload(minute_file: Path) -> Workload:
    """Minute bars as the engine's input: sessions (day, symbol) one after another, in time order."""
    table = pq.read_table(minute_file, columns=["symbol", "ts", "open", "high", "low", "close"])
    # Wall-clock New York time as microseconds since the epoch, so that // and % give day and minute.
    local_us = pc.local_timestamp(table["ts"]).cast("int64").to_numpy()
    day = local_us // 86_400_000_000
    minute = (local_us // 60_000_000 % 1440).astype(np.int32)
    symbols = table["symbol"].combine_chunks().dictionary_encode()
    symbol_code = symbols.indices.to_numpy()

    order = np.lexsort((local_us, symbol_code, day))
    day, symbol_code, minute = day[order], symbol_code[order], minute[order]
    session_key = day * (int(symbol_code.max()) + 1) + symbol_code
    starts = np.flatnonzero(np.diff(session_key, prepend=-1))
    prices = {name: to_units(table[name].to_numpy())[order] for name in ("open", "high", "low", "close")}
    bars = SessionBars(starts=starts.astype(np.int64), minute=minute, **prices)
    return Workload(
        bars=bars,
        session_day=day[starts].astype("datetime64[D]"),
        session_symbol=np.asarray(symbols.dictionary.to_pylist(), dtype=object)[symbol_code[starts]],
    )


def bars_per_session(bars: SessionBars) -> dict[int, int]:
    """How many sessions have how many bars: {390: 10000} when every session is complete."""
    counts, n_sessions = np.unique(bars.ends - bars.starts, return_counts=True)
    return {int(count): int(n) for count, n in zip(counts, n_sessions, strict=True)}


# -- (a) the numpy reference -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DenseBars:
    """Sessions as rows and minutes since 09:30 as columns; `present` marks the bars that exist."""

    open: np.ndarray  # int64 units, (n_sessions, n_minutes)
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    present: np.ndarray  # bool
    bar_index: np.ndarray  # int64 index into the flat SessionBars arrays, -1 where no bar


def dense_bars(bars: SessionBars) -> DenseBars:
    """The flat bars as (n_sessions, n_minutes) matrices; built once, outside the timing."""
    lengths = bars.ends - bars.starts
    row = np.repeat(np.arange(len(bars.starts)), lengths)
    column = bars.minute.astype(np.int64) - OPEN_MINUTE
    if column.min() < 0:
        raise ValueError("the workload has bars before 09:30; the numpy reference expects regular-hours bars")
    shape = (len(bars.starts), int(column.max()) + 1)

    def grid(values: np.ndarray, fill: int) -> np.ndarray:
        matrix = np.full(shape, fill, dtype=values.dtype)
        matrix[row, column] = values
        return matrix

    return DenseBars(
        open=grid(bars.open, 0),
        high=grid(bars.high, 0),
        low=grid(bars.low, 0),
        close=grid(bars.close, 0),
        present=grid(np.ones(bars.n_bars, dtype=bool), False),
        bar_index=grid(np.arange(bars.n_bars), -1),
    )


@dataclass(frozen=True, slots=True)
class NumpyResults:
    exit_column: np.ndarray  # minutes since 09:30 of the exit bar; -1 for a fill at the last close
    exit_code: np.ndarray
    exit_price: np.ndarray  # units
    pnl: np.ndarray  # units


def round_half_up_to_tick(numerator: np.ndarray, denominator: int) -> np.ndarray:
    """numerator / denominator (a price in units) rounded half up to $0.01, or to $0.0001 under $1."""
    to_cent = (numerator + 50 * denominator) // (100 * denominator) * 100
    to_unit = (2 * numerator + denominator) // (2 * denominator)
    return np.where(numerator >= UNITS * denominator, to_cent, to_unit)


def numpy_replay(dense: DenseBars, shares: np.ndarray) -> NumpyResults:
    """Buy at the 09:30 open, exit at the first bar that reaches the target or the stop, else at 15:45."""
    n_sessions, n_minutes = dense.open.shape
    rows = np.arange(n_sessions)
    filled = dense.present[:, 0]
    entry = dense.open[:, 0]
    target = round_half_up_to_tick(entry * TARGET_PER_MILLE, 1000)
    stop = round_half_up_to_tick(entry * STOP_PER_MILLE, 1000)

    n_active = min(LIQUIDATION_MINUTE - OPEN_MINUTE, n_minutes)  # only bars that start before 15:45
    open_, high, low = dense.open[:, :n_active], dense.high[:, :n_active], dense.low[:, :n_active]
    triggers = (
        (open_ >= target[:, None]) | (open_ <= stop[:, None]) | (low <= stop[:, None]) | (high >= target[:, None])
    ) & dense.present[:, :n_active]
    first = triggers.argmax(axis=1)
    triggered = triggers[rows, first]

    # Which condition fired at the first triggering bar, in priority order.
    first_open, first_low = open_[rows, first], low[rows, first]
    target_at_open = first_open >= target
    stop_at_open = ~target_at_open & (first_open <= stop)
    stop_in_bar = ~target_at_open & ~stop_at_open & (first_low <= stop)
    hit_price = np.where(target_at_open | stop_at_open, first_open, np.where(stop_in_bar, stop, target))
    hit_code = np.where(stop_at_open | stop_in_bar, STOP_CODE, TARGET_CODE)

    # Not triggered: the open of the first bar at or after 15:45, or the close of the last bar.
    later = dense.present[:, n_active:]
    has_later = later.any(axis=1)
    liquidation_column = n_active + later.argmax(axis=1)
    last_column = n_minutes - 1 - dense.present[:, ::-1].argmax(axis=1)
    eod_price = np.where(
        has_later, dense.open[rows, np.minimum(liquidation_column, n_minutes - 1)], dense.close[rows, last_column]
    )

    exit_price = np.where(triggered, hit_price, eod_price)
    exit_column = np.where(triggered, first, np.where(has_later, liquidation_column, -1))
    commission = 2 * np.maximum(COMMISSION_MIN_UNITS, COMMISSION_PER_SHARE_UNITS * shares)
    pnl = (exit_price - entry) * shares - commission
    return NumpyResults(
        exit_column=np.where(filled, exit_column, -1),
        exit_code=np.where(filled, np.where(triggered, hit_code, EOD_CODE), 0),
        exit_price=np.where(filled, exit_price, 0),
        pnl=np.where(filled, pnl, 0),
    )


# -- (a) timing and the cross-check ------------------------------------------------------------


def best_of(run: Callable[[], object], repeats: int) -> float:
    """Seconds of the fastest of `repeats` runs, after one warm-up run."""
    run()
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        timings.append(time.perf_counter() - started)
    return min(timings)


def mismatching_sessions(engine: SessionResults, reference: NumpyResults, dense: DenseBars) -> np.ndarray:
    """Sessions where the engine and the numpy reference disagree on exit bar, code, price or P&L."""
    rows = np.arange(len(engine.pnl))
    reference_index = np.where(reference.exit_column >= 0, dense.bar_index[rows, np.maximum(reference.exit_column, 0)], -1)
    differs = (
        (engine.exit_index != reference_index)
        | (engine.exit_code != reference.exit_code)
        | (engine.exit_price != reference.exit_price)
        | (engine.pnl != reference.pnl)
    )
    return np.flatnonzero(differs)


def describe_mismatch(
    session: int, workload: Workload, engine: SessionResults, reference: NumpyResults, dense: DenseBars
) -> str:
    """One mismatching session: both answers and the bars around the two exits."""
    bars = workload.bars
    start, end = int(bars.starts[session]), int(bars.ends[session])
    ref_index = int(dense.bar_index[session, reference.exit_column[session]]) if reference.exit_column[session] >= 0 else -1
    lines = [
        f"session {session}: {workload.session_symbol[session]} on {workload.session_day[session]}, "
        f"entry {engine.entry_price[session]} target {engine.target[session]} stop {engine.stop[session]} (units)",
        f"  engine: bar {engine.exit_index[session]} code {engine.exit_code[session]} "
        f"price {engine.exit_price[session]} pnl {engine.pnl[session]}",
        f"  numpy:  bar {ref_index} code {reference.exit_code[session]} "
        f"price {reference.exit_price[session]} pnl {reference.pnl[session]}",
    ]
    exit_bars = [i for i in (int(engine.exit_index[session]), ref_index) if i >= 0] or [end - 1]
    around = {i for exit_bar in exit_bars for i in range(exit_bar - 2, exit_bar + 3) if start <= i < end}
    for i in sorted(around):
        minute = int(bars.minute[i])
        lines.append(
            f"    bar {i} {minute // 60:02d}:{minute % 60:02d}  open {bars.open[i]} high {bars.high[i]} "
            f"low {bars.low[i]} close {bars.close[i]}"
        )
    return "\n".join(lines)


def bench_engine(n_symbols: int, repeats: int) -> dict:
    """Part (a): the engine and the numpy reference on the same bars, timed and cross-checked."""
    workload = load_workload(workload_minute_file(n_symbols))
    bars = workload.bars
    shares = np.full(len(bars.starts), SHARES, dtype=np.int64)
    policy = ExitPolicy(target_pct=Decimal("2.6"), stop_pct=Decimal("0.9"))
    costs = FillCosts(per_share=Decimal("0.005"), minimum=Decimal("1.00"))
    dense = dense_bars(bars)

    run_engine = lambda: replay_sessions(bars, shares, liquidation_minute=LIQUIDATION_MINUTE, policy=policy, costs=costs)
    run_numpy = lambda: numpy_replay(dense, shares)
    engine_s = best_of(run_engine, repeats)
    numpy_s = best_of(run_numpy, repeats)

    engine, reference = run_engine(), run_numpy()
    mismatches = mismatching_sessions(engine, reference, dense)
    for session in mismatches[:5]:
        print(describe_mismatch(int(session), workload, engine, reference, dense))

    exit_codes = {
        name: int((engine.exit_code == code).sum())
        for name, code in (("target", TARGET_CODE), ("stop", STOP_CODE), ("eod", EOD_CODE))
    }
    engine_rate, numpy_rate = bars.n_bars / engine_s, bars.n_bars / numpy_s
    return {
        "symbols": n_symbols,
        "sessions": len(bars.starts),
        "bars": bars.n_bars,
        "bars_per_session": bars_per_session(bars),
        "repeats": repeats,
        "engine_s": engine_s,
        "engine_bars_per_s": engine_rate,
        "numpy_s": numpy_s,
        "numpy_bars_per_s": numpy_rate,
        "engine_over_numpy_time": engine_s / numpy_s,
        "sessions_checked": len(bars.starts),
        "sessions_filled": int(engine.filled.sum()),
        "exits": exit_codes,
        "mismatches": len(mismatches),
        "mismatching_sessions": [int(s) for s in mismatches[:20]],
        "meets_2m_bars_per_s": engine_rate >= TARGET_BARS_PER_S,
        "meets_within_3x_numpy": engine_s / numpy_s <= TARGET_MAX_RATIO,
    }


# -- report ------------------------------------------------------------------------------------


def machine() -> dict:
    return {
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
    }


def yes_no(ok: bool) -> str:
    return "yes" if ok else "NO"


def print_report(info: dict, engine: dict) -> None:
    print(f"\nmachine: {info['cpu_count']} cores, Python {info['python']}, numpy {info['numpy']}, {info['platform']}")
    counts = ", ".join(f"{n} sessions of {k} bars" for k, n in engine["bars_per_session"].items())
    print(
        f"workload: {engine['symbols']} symbols x {engine['sessions'] // engine['symbols']} sessions = "
        f"{engine['bars']:,} bars ({counts}); best of {engine['repeats']} after a warm-up\n"
    )
    engine_rate, numpy_rate = engine["engine_bars_per_s"] / 1e6, engine["numpy_bars_per_s"] / 1e6
    rows = [
        ("replay engine (openbell.core.backtest)", f"{engine['engine_s'] * 1000:.1f} ms", f"{engine_rate:.1f} M bars/s"),
        ("plain numpy reference (this file)", f"{engine['numpy_s'] * 1000:.1f} ms", f"{numpy_rate:.1f} M bars/s"),
        ("engine time / numpy time", f"{engine['engine_over_numpy_time']:.2f}x", ""),
    ]
    width = max(len(row[0]) for row in rows)
    for name, value, note in rows:
        print(f"  {name:<{width}}  {value:>10}  {note}")

    print(
        f"\nagreement: {engine['sessions_checked']:,} sessions checked "
        f"({engine['sessions_filled']:,} filled; exits {engine['exits']}), {engine['mismatches']} mismatches"
    )
    print(f"target >= {TARGET_BARS_PER_S / 1e6:.0f}M bars/s:     {yes_no(engine['meets_2m_bars_per_s'])}")
    print(f"target within {TARGET_MAX_RATIO:.0f}x of numpy:  {yes_no(engine['meets_within_3x_numpy'])}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50 symbols and one timed repetition")
    args = parser.parse_args(argv)

    info = machine()
    engine = bench_engine(N_SYMBOLS_QUICK if args.quick else N_SYMBOLS, REPEATS_QUICK if args.quick else REPEATS)
    print_report(info, engine)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    results = {
        "measured_at": datetime.now().astimezone().isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": info,
        "replay_engine": engine,
    }
    (RESULTS_DIR / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {RESULTS_DIR / 'latest.json'}")
    return 0 if engine["mismatches"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
