"""Exit sweeps: every target x stop x liquidation time over the same sessions, entries and sizes, with an overfitting check.

The sessions are planned once (scan, rank) and sized once, on the starting equity: the entries stay
the same, only the exits change, so `core.sweep.sweep_exits` evaluates the whole grid over one layout
of the bars instead of one backtest per combination. To show how much of the best result is luck,
the combination is chosen on the first part of the range (in sample) and reported on the rest.
"""

from __future__ import annotations

import math
import time as clock
from dataclasses import dataclass
from datetime import date, time, timedelta
from decimal import Decimal, InvalidOperation

import numpy as np
import pandas as pd

from openbell import calendar
from openbell.core.backtest import select_sessions
from openbell.core.metrics import GRID_METRICS, METRIC_LABELS, grid_metrics
from openbell.core.prices import UNITS
from openbell.core.sizing import PositionSize, size_position, within_buying_power
from openbell.core.sweep import ExitGrid, sweep_exits
from openbell.errors import ConfigError
from openbell.research.backtest import NO_PRICE, BacktestSpec, Planner, Progress, plan_in_process, replay_source, sessions_of

MAX_COMBINATIONS = 20_000


@dataclass(frozen=True)
class SweepSpec:
    """A sweep: the backtest it varies, the exit grid, the metric that ranks, and the in-sample share."""

    backtest: BacktestSpec
    targets_pct: tuple[Decimal, ...]
    stops_pct: tuple[Decimal, ...]
    liquidations: tuple[time, ...]
    metric: str = "sharpe"
    in_sample: float = 0.5  # the share of the sessions the combination is chosen on

    def __post_init__(self) -> None:
        if self.metric not in GRID_METRICS:
            raise ConfigError(f"unknown metric {self.metric!r}; rank by one of {', '.join(GRID_METRICS)}")
        if not 0 < self.in_sample < 1:
            raise ConfigError(f"--in-sample is the share of sessions to choose on, between 0 and 1, not {self.in_sample}")
        if not (self.targets_pct and self.stops_pct and self.liquidations):
            raise ConfigError("a sweep needs at least one target, one stop and one liquidation time")
        try:
            ExitGrid(self.targets_pct, self.stops_pct, np.zeros((1, 1), dtype=np.int64))  # the exit policy's own checks
        except ValueError as exc:
            raise ConfigError(f"exit grid: {exc}") from None
        n = len(self.targets_pct) * len(self.stops_pct) * len(self.liquidations)
        if n > MAX_COMBINATIONS:
            raise ConfigError(f"{n:,} combinations are more than {MAX_COMBINATIONS:,}: use coarser steps")


@dataclass(frozen=True)
class SweepOutcome:
    """Every combination's metrics (over the range, in sample, out of sample), and the overfitting check."""

    run_id: str
    table: pd.DataFrame  # one row per combination: target_pct, stop_pct, liquidation, metrics, in_/out_of_sample_<metric>
    chosen: pd.Series  # the row chosen in sample
    notes: tuple[str, ...]
    parameters: dict


def parse_grid(text: str, flag: str) -> tuple[Decimal, ...]:
    """A grid of percents: `1:4:0.25` (from, to inclusive, step), `2,2.6,3`, or one value.

    Raises:
        ConfigError: not numbers, a step that is not positive, or an empty range.
    """
    text = text.strip()
    try:
        if ":" in text:
            parts = [Decimal(p) for p in text.split(":")]
            if len(parts) != 3:
                raise ConfigError(f"{flag} {text!r}: give FROM:TO:STEP, e.g. 1:4:0.25")
            first, last, step = parts
            if step <= 0:
                raise ConfigError(f"{flag} {text!r}: the step must be positive, e.g. 1:4:0.25")
            if last < first:
                raise ConfigError(f"{flag} {text!r}: the range is empty (TO is below FROM)")
            count = int((last - first) / step) + 1
            if count > MAX_COMBINATIONS:
                raise ConfigError(f"{flag} {text!r}: {count:,} values; use a coarser step")
            return tuple(first + i * step for i in range(count))
        return tuple(sorted({Decimal(p) for p in text.split(",") if p.strip()}))
    except InvalidOperation:
        raise ConfigError(
            f"{flag} {text!r} is not a grid of numbers: give FROM:TO:STEP (1:4:0.25) or a list (2,2.6,3)"
        ) from None


def parse_times(text: str) -> tuple[time, ...]:
    """Liquidation times like `15:45,15:00` (New York)."""
    try:
        return tuple(sorted({time.fromisoformat(p.strip()) for p in text.split(",") if p.strip()}, reverse=True))
    except ValueError:
        raise ConfigError(f"--liquidation {text!r}: give New York times like 15:45,15:00") from None


def run_sweep(
    spec: SweepSpec, *, run_id: str, planner: Planner | None = None, progress: Progress = lambda *_: None
) -> SweepOutcome:
    """Plan and size the sessions once, evaluate every exit combination over them, rank, and check out of sample."""
    started = clock.perf_counter()
    base = spec.backtest
    settings = base.settings
    market = replay_source(settings)
    days = sessions_of(base, market)
    if len(days) < 2:
        raise ConfigError("a sweep chooses on one part of the range and reports the other: give at least two sessions")
    plans = (planner or plan_in_process)(base, days, progress)
    symbols = sorted({s for p in plans for s, _ in p.picks})
    bars, sessions = market.session_bars_between(days[0], days[-1], symbols)
    index = {(d, s): i for i, (d, s) in enumerate(zip(sessions["day"], sessions["symbol"], strict=True))}

    chosen_sessions, shares, chosen_day = [], [], []
    for day_number, plan in enumerate(plans):
        sizes = [
            size_position(symbol, price, base.starting_equity, settings.sizing.policy())
            if price > 0
            else PositionSize(symbol, price, 0, Decimal(0), NO_PRICE)
            for symbol, price in plan.picks
        ]
        for size in within_buying_power(sizes, base.starting_equity):
            if size.shares and (plan.day, size.symbol) in index:
                chosen_sessions.append(index[(plan.day, size.symbol)])
                shares.append(size.shares)
                chosen_day.append(day_number)
    session_day = np.array(chosen_day, dtype=np.int64)
    layout = select_sessions(bars, np.array(chosen_sessions, dtype=np.int64))
    offset = timedelta(minutes=settings.exits.early_close_offset_min)
    minutes = np.array(
        [[_minute(calendar.liquidation_time(days[d], at, offset)) for d in session_day] or [0] for at in spec.liquidations],
        dtype=np.int64,
    )
    grid = ExitGrid(spec.targets_pct, spec.stops_pct, minutes if len(session_day) else minutes[:, :1])
    results = sweep_exits(layout, np.array(shares, dtype=np.int64), grid, settings.broker.costs())

    pnl = results.pnl.astype(float) / UNITS  # (combinations, sessions)
    filled = results.filled
    split = max(1, min(len(days) - 1, math.ceil(len(days) * spec.in_sample)))
    table = _combinations(results, spec.liquidations)
    equity = float(base.starting_equity)
    for part, first, last in (("", 0, len(days)), ("in_sample_", 0, split), ("out_of_sample_", split, len(days))):
        in_part = (session_day >= first) & (session_day < last)
        daily = _by_day(pnl[:, in_part], session_day[in_part] - first, last - first)
        metrics = grid_metrics(daily, pnl[:, in_part & filled], equity)
        for key in GRID_METRICS if not part else (spec.metric,):
            table[f"{part}{key}"] = metrics[key]
    chosen, notes = _overfitting_check(table, spec.metric, days, split)
    parameters = base.parameters() | {
        "sessions": len(days),
        "targets_pct": [str(t) for t in spec.targets_pct],
        "stops_pct": [str(s) for s in spec.stops_pct],
        "liquidations": [f"{t:%H:%M}" for t in spec.liquidations],
        "metric": spec.metric,
        "in_sample": spec.in_sample,
        "combinations": len(table),
        "wall_s": round(clock.perf_counter() - started, 3),
    }
    return SweepOutcome(run_id, table, chosen, tuple(notes), parameters)


def _minute(at) -> int:
    return at.hour * 60 + at.minute


def _combinations(results, liquidations: tuple[time, ...]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "target_pct": [float(t) for t in results.target_pct],
            "stop_pct": [float(s) for s in results.stop_pct],
            "liquidation": [f"{liquidations[i]:%H:%M}" for i in results.liquidation_index],
        }
    )


def _by_day(pnl: np.ndarray, day: np.ndarray, n_days: int) -> np.ndarray:
    """(combinations, sessions) P&L summed into (combinations, days); days without a trade are 0."""
    out = np.zeros((pnl.shape[0], n_days))
    np.add.at(out.T, day, pnl.T)  # through the transposed view: each session's column into its day's
    return out


def _overfitting_check(table: pd.DataFrame, metric: str, days: list[date], split: int) -> tuple[pd.Series, list[str]]:
    """The combination best in sample, and how it did on the sessions it was not chosen on."""
    label = METRIC_LABELS.get(metric, metric)
    in_key, out_key = f"in_sample_{metric}", f"out_of_sample_{metric}"
    ranked = table.sort_values([in_key, "target_pct", "stop_pct"], ascending=[False, True, True], na_position="last")
    chosen = ranked.iloc[0]
    out_rank = int((table[out_key] > chosen[out_key]).sum()) + 1
    best_out = table[out_key].max()
    name = f"+{chosen['target_pct']:g}% / -{chosen['stop_pct']:g}% / {chosen['liquidation']}"
    notes = [
        f"chosen on the first {split} sessions ({days[0]} to {days[split - 1]}): {name}, {label} {chosen[in_key]:.2f}",
        f"on the other {len(days) - split} sessions ({days[split]} to {days[-1]}) it scored {chosen[out_key]:.2f}, "
        f"rank {out_rank} of {len(table)}; the best there scored {best_out:.2f}",
    ]
    if chosen[in_key] > 0 >= chosen[out_key]:
        notes.append("what looked good in sample did not hold out of sample: read the best combination as overfitted")
    return chosen, notes
