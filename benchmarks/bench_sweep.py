"""Benchmark of exit-policy sweeps: a grid of target x stop x liquidation over the replay workload.

The workload is bench_replay.py's synthetic market (500 symbols x 20 sessions of one-minute bars,
3.9M bars; generated once and cached under benchmarks/results/workload/), 100 shares bought at each
session's opening print with 5 bps of slippage. Timed, each the median of several runs after a
warm-up, loading not included:
- one `replay_sessions` call (one policy: +2.6% / -0.9%, liquidation at 15:45);
- `sweep_exits` with 100 combinations (10 targets x 10 stops) and with 1,000 (50 targets 1.00..3.45%
  x 20 stops 0.500..1.925%), liquidation at 15:45; and 1,000 as 25 targets x 20 stops x 2
  liquidation choices, one of them moved to 12:45 on the last day as on a half day;
- a plain numpy reference written in this file: the same 1,000 combinations the straightforward way,
  running extremes per session and then one search per combination, with the fill rule written out.
The sweep is checked against the reference on every combination and session (exit bar, reason, price,
P&L), and field for field against `replay_sessions` on a sample of combinations.

Run:  uv run python -m benchmarks.bench_sweep [--quick]
      (--quick: 50 symbols and fewer repetitions, for a fast sanity check)
Prints a table and writes benchmarks/results/sweep.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import datetime
from decimal import Decimal

import numpy as np

from benchmarks.bench_replay import (
    COMMISSION_MIN_UNITS,
    COMMISSION_PER_SHARE_UNITS,
    EOD_CODE,
    N_SYMBOLS,
    N_SYMBOLS_QUICK,
    OPEN_MINUTE,
    RESULTS_DIR,
    SHARES,
    STOP_CODE,
    TARGET_CODE,
    DenseBars,
    dense_bars,
    load_workload,
    machine,
    round_half_up_to_tick,
    workload_minute_file,
)
from openbell.core.backtest import FillCosts, SessionBars, replay_sessions
from openbell.core.exits import ExitPolicy
from openbell.core.sweep import ExitGrid, SweepResults, sweep_exits

SLIPPAGE_BPS = 5
LIQUIDATION, HALF_DAY_LIQUIDATION = 15 * 60 + 45, 12 * 60 + 45
TARGETS = tuple(Decimal("1.00") + Decimal("0.05") * i for i in range(50))  # 1.00 .. 3.45
STOPS = tuple(Decimal("0.500") + Decimal("0.075") * i for i in range(20))  # 0.500 .. 1.925
REPEATS, REPEATS_QUICK = 7, 3
REFERENCE_REPEATS, REFERENCE_REPEATS_QUICK = 3, 1
SAMPLED_COMBINATIONS = 6  # checked field for field against replay_sessions, per grid

# Targets from the issue.
TARGET_MAX_SWEEP_1000_S = 2.0
TARGET_MAX_SWEEP_100_OVER_REPLAY = 3.0


def median_of(run: Callable[[], object], repeats: int) -> float:
    """Median seconds of `repeats` runs, after one warm-up run."""
    run()
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def peak_mb(run: Callable[[], object]) -> float:
    """Peak memory allocated while `run` runs (numpy's buffers included), in MB."""
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()


# -- the numpy reference -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReferenceResults:
    exit_index: np.ndarray  # (n_combinations, n_sessions), -1 for a fill at the last close or unfilled
    exit_code: np.ndarray
    exit_price: np.ndarray  # units
    pnl: np.ndarray  # units


def numpy_sweep(
    dense: DenseBars,
    shares: np.ndarray,
    targets_pct: tuple[Decimal, ...],
    stops_pct: tuple[Decimal, ...],
    liquidation_minutes: np.ndarray,
    slippage_bps: int,
) -> ReferenceResults:
    """Every combination, target-major, one at a time: levels, two searches, the fill rule at the first trigger.

    Works on dense (sessions x minutes since 09:30) matrices. A target is reached on the first bar whose
    max(open, high) reaches it; the running maximum of that along each row, shifted by row x span, is
    sorted, so `np.searchsorted` finds the first such bar of every row at once (the stop likewise, on the
    running maximum of -min(open, low)). A bar triggers only if it starts before the liquidation minute.
    """
    n_sessions, n_minutes = dense.open.shape
    rows = np.arange(n_sessions)
    present = dense.present
    lowest = int(np.minimum(dense.open, dense.low)[present].min())
    highest = int(np.maximum(dense.open, dense.high)[present].max())
    span = highest - lowest + 2
    row_offset = rows.astype(np.int64) * span
    # Missing minutes get values that never reach a level: the row's lowest possible key.
    reach_up = np.where(present, np.maximum(dense.open, dense.high) - lowest, 0) + row_offset[:, None]
    reach_down = np.where(present, highest - np.minimum(dense.open, dense.low), 0) + row_offset[:, None]
    running_up = np.maximum.accumulate(reach_up, axis=1).ravel()
    running_down = np.maximum.accumulate(reach_down, axis=1).ravel()

    def first_column(running: np.ndarray, level_key: np.ndarray) -> np.ndarray:
        """Column of the first bar whose key reaches `level_key` (per row), n_minutes where none does."""
        found = np.searchsorted(running, np.clip(level_key, 0, span - 1) + row_offset) - rows * n_minutes
        return np.minimum(found, n_minutes)

    filled = present[:, 0] & (shares > 0)
    entry = np.where(filled, round_half_up_to_tick(dense.open[:, 0] * (10_000 + slippage_bps), 10_000), 0)
    commission = np.where(filled, 2 * np.maximum(COMMISSION_MIN_UNITS, COMMISSION_PER_SHARE_UNITS * shares), 0)
    last_column = n_minutes - 1 - present[:, ::-1].argmax(axis=1)
    sell = lambda price: round_half_up_to_tick(price * (10_000 - slippage_bps), 10_000)

    # Liquidation: the open of the first bar at or after the minute, else the last close.
    liquidation_column = np.clip(liquidation_minutes - OPEN_MINUTE, 0, n_minutes)  # bars before it may trigger
    columns = np.arange(n_minutes)
    eod = []
    for minute_column in liquidation_column:
        later = present & (columns >= minute_column[:, None])
        has_later = later.any(axis=1)
        column = np.where(has_later, later.argmax(axis=1), last_column)
        price = np.where(has_later, dense.open[rows, column], dense.close[rows, column])
        eod.append((np.where(has_later, dense.bar_index[rows, column], -1), sell(price)))

    shape = (len(targets_pct) * len(stops_pct) * len(liquidation_column), n_sessions)
    out = ReferenceResults(*(np.zeros(shape, dtype=np.int64) for _ in range(4)))
    c = 0
    for target_pct in targets_pct:
        numerator, denominator = (1 + target_pct / 100).as_integer_ratio()
        target = round_half_up_to_tick(entry * numerator, denominator)
        target_column = first_column(running_up, target - lowest)
        for stop_pct in stops_pct:
            numerator, denominator = (1 - stop_pct / 100).as_integer_ratio()
            stop = round_half_up_to_tick(entry * numerator, denominator)
            first = np.minimum(target_column, first_column(running_down, highest - stop))
            at = np.minimum(first, n_minutes - 1)
            open_, low = dense.open[rows, at], dense.low[rows, at]
            # The fill rule, in priority order: target at the open, stop at the open, stop in the bar, target in the bar.
            target_at_open = open_ >= target
            stop_at_open = ~target_at_open & (open_ <= stop)
            stop_in_bar = ~target_at_open & ~stop_at_open & (low <= stop)
            is_stop = stop_at_open | stop_in_bar
            hit_price = np.where(target_at_open | stop_at_open, open_, np.where(stop_in_bar, stop, target))
            hit_price = np.where(is_stop, sell(hit_price), round_half_up_to_tick(hit_price, 1))
            for minute_column, (eod_index, eod_price) in zip(liquidation_column, eod, strict=True):
                triggered = first < minute_column
                price = np.where(triggered, hit_price, eod_price)
                out.exit_index[c] = np.where(filled, np.where(triggered, dense.bar_index[rows, at], eod_index), -1)
                code = np.where(triggered, np.where(is_stop, STOP_CODE, TARGET_CODE), EOD_CODE)
                out.exit_code[c] = np.where(filled, code, 0)
                out.exit_price[c] = np.where(filled, price, 0)
                out.pnl[c] = np.where(filled, (price - entry) * shares - commission, 0)
                c += 1
    return out


# -- agreement ---------------------------------------------------------------------------------


def reference_mismatches(sweep: SweepResults, reference: ReferenceResults) -> int:
    """(combination, session) pairs where the sweep and the reference differ in exit bar, reason, price or P&L."""
    differs = (
        (sweep.exit_index != reference.exit_index)
        | (sweep.exit_code != reference.exit_code)
        | (sweep.exit_price != reference.exit_price)
        | (sweep.pnl != reference.pnl)
    )
    return int(differs.sum())


def replay_mismatches(bars: SessionBars, shares: np.ndarray, sweep: SweepResults, costs: FillCosts) -> list[str]:
    """Fields that differ from `replay_sessions` on evenly spaced combinations (first and last included)."""
    found = []
    n_sessions = len(bars.starts)
    for c in np.linspace(0, sweep.grid.n_combinations - 1, SAMPLED_COMBINATIONS).astype(int):
        minutes = np.broadcast_to(sweep.grid.liquidation_minutes[sweep.liquidation_index[c]], (n_sessions,))
        expected = replay_sessions(bars, shares, minutes, sweep.policy(c), costs)
        actual = sweep.session_results(c)
        for field in fields(expected):
            if not np.array_equal(getattr(expected, field.name), getattr(actual, field.name)):
                found.append(f"combination {c}: {field.name}")
    return found


# -- the benchmark -----------------------------------------------------------------------------


def bench_sweep(n_symbols: int, repeats: int, reference_repeats: int) -> dict:
    workload = load_workload(workload_minute_file(n_symbols))
    bars = workload.bars
    n_sessions = len(bars.starts)
    shares = np.full(n_sessions, SHARES, dtype=np.int64)
    costs = FillCosts(per_share=Decimal("0.005"), minimum=Decimal("1.00"), slippage_bps=Decimal(SLIPPAGE_BPS))
    dense = dense_bars(bars)

    half_day = workload.session_day == workload.session_day.max()  # the last day, as if it were a half day
    regular = np.array([[LIQUIDATION]])
    two_choices = np.stack([np.where(half_day, HALF_DAY_LIQUIDATION, LIQUIDATION), np.full(n_sessions, 12 * 60)])
    grids = {
        "100": ExitGrid(TARGETS[:10], STOPS[:10], regular),
        "1000": ExitGrid(TARGETS, STOPS, regular),
        "1000x2": ExitGrid(TARGETS[::2], STOPS, two_choices),
    }

    policy = ExitPolicy(Decimal("2.6"), Decimal("0.9"))
    replay_s = median_of(lambda: replay_sessions(bars, shares, LIQUIDATION, policy, costs), repeats)
    sweep_s = {
        name: median_of(lambda grid=grid: sweep_exits(bars, shares, grid, costs), repeats) for name, grid in grids.items()
    }
    sweeps = {name: sweep_exits(bars, shares, grid, costs) for name, grid in grids.items()}
    peak = {name: peak_mb(lambda grid=grid: sweep_exits(bars, shares, grid, costs)) for name, grid in grids.items()}

    reference_grids = ("1000", "1000x2")

    def run_reference(grid: ExitGrid) -> ReferenceResults:
        minutes = np.broadcast_to(grid.liquidation_minutes, (grid.n_liquidations, n_sessions))
        return numpy_sweep(dense, shares, grid.targets_pct, grid.stops_pct, minutes, SLIPPAGE_BPS)

    reference_s = median_of(lambda: run_reference(grids["1000"]), reference_repeats)
    agreement = {}
    for name in reference_grids:
        sweep = sweeps[name]
        agreement[name] = {
            "pairs_checked": sweep.exit_code.size,
            "reference_mismatches": reference_mismatches(sweep, run_reference(grids[name])),
            "replay_combinations_checked": SAMPLED_COMBINATIONS,
            "replay_mismatches": replay_mismatches(bars, shares, sweep, costs),
            "exits": {
                reason: int((sweep.exit_code == code).sum())
                for reason, code in (("target", TARGET_CODE), ("stop", STOP_CODE), ("eod", EOD_CODE))
            },
        }

    return {
        "symbols": n_symbols,
        "sessions": n_sessions,
        "bars": bars.n_bars,
        "repeats": repeats,
        "slippage_bps": SLIPPAGE_BPS,
        "replay_s": replay_s,
        "sweeps": {
            name: {
                "grid": list(grid.shape),
                "combinations": grid.n_combinations,
                "seconds": sweep_s[name],
                "ms_per_combination": sweep_s[name] * 1000 / grid.n_combinations,
                "over_one_replay": sweep_s[name] / replay_s,
                "peak_mb": peak[name],
            }
            for name, grid in grids.items()
        },
        "reference_1000_s": reference_s,
        "reference_over_sweep_1000": reference_s / sweep_s["1000"],
        "agreement": agreement,
        "meets_1000_under_2s": sweep_s["1000"] < TARGET_MAX_SWEEP_1000_S,
        "meets_100_under_3x_replay": sweep_s["100"] / replay_s < TARGET_MAX_SWEEP_100_OVER_REPLAY,
    }


def yes_no(ok: bool) -> str:
    return "yes" if ok else "NO"


def print_report(info: dict, result: dict) -> None:
    print(f"\nmachine: {info['cpu_count']} cores, Python {info['python']}, numpy {info['numpy']}, {info['platform']}")
    print(
        f"workload: {result['symbols']} symbols, {result['sessions']:,} sessions, {result['bars']:,} bars; "
        f"{SHARES} shares, {result['slippage_bps']} bps slippage; median of {result['repeats']} after a warm-up\n"
    )
    replay_ms = result["replay_s"] * 1000
    rows = [("replay_sessions, one policy", f"{replay_ms:.1f} ms", "1.00x", "")]
    for sweep in result["sweeps"].values():
        targets, stops, liquidations = sweep["grid"]
        rows.append(
            (
                f"sweep_exits, {sweep['combinations']:,} ({targets} x {stops} x {liquidations})",
                f"{sweep['seconds'] * 1000:.1f} ms",
                f"{sweep['over_one_replay']:.2f}x",
                f"{sweep['ms_per_combination']:.3f} ms/combination, peak {sweep['peak_mb']:.0f} MB",
            )
        )
    reference_ms = result["reference_1000_s"] * 1000
    note = f"one search per combination; {result['reference_over_sweep_1000']:.1f}x the sweep"
    rows.append(("numpy reference, 1,000 (50 x 20 x 1)", f"{reference_ms:.1f} ms", f"{reference_ms / replay_ms:.2f}x", note))
    width = max(len(row[0]) for row in rows)
    print(f"  {'':<{width}}  {'median':>10}  {'/ replay':>8}")
    for name, value, ratio, note in rows:
        print(f"  {name:<{width}}  {value:>10}  {ratio:>8}  {note}")

    print()
    for name, check in result["agreement"].items():
        print(
            f"agreement {name}: {check['pairs_checked']:,} (combination, session) pairs, "
            f"{check['reference_mismatches']} mismatches with the reference; "
            f"{check['replay_combinations_checked']} combinations field for field against replay_sessions, "
            f"{len(check['replay_mismatches'])} mismatches; exits {check['exits']}"
        )
    print(f"target 1,000 combinations < {TARGET_MAX_SWEEP_1000_S:.0f} s:          {yes_no(result['meets_1000_under_2s'])}")
    print(
        f"target 100 combinations < {TARGET_MAX_SWEEP_100_OVER_REPLAY:.0f}x one replay:   "
        f"{yes_no(result['meets_100_under_3x_replay'])}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50 symbols and fewer repetitions")
    args = parser.parse_args(argv)

    info = machine()
    result = bench_sweep(
        N_SYMBOLS_QUICK if args.quick else N_SYMBOLS,
        REPEATS_QUICK if args.quick else REPEATS,
        REFERENCE_REPEATS_QUICK if args.quick else REFERENCE_REPEATS,
    )
    print_report(info, result)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    output = RESULTS_DIR / "sweep.json"
    payload = {
        "measured_at": datetime.now().astimezone().isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": info,
        "sweep": result,
    }
    output.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"\nwrote {output}")
    agreed = all(not c["reference_mismatches"] and not c["replay_mismatches"] for c in result["agreement"].values())
    return 0 if agreed else 1


if __name__ == "__main__":
    sys.exit(main())
