"""Exit decisions: the one rule that closes a long position at its target, its stop or neither.

`bar_exits` is elementwise over numpy arrays, so the same code decides exits for every open
position on the current bar (the live monitor, the paper broker) and for every bar of every
position at once (the replay engine). Prices are integer units of $0.0001 (see core.prices).

For each bar, the first branch that holds wins:
1. the bar opens at or above the target -> target fills at the open
2. the bar opens at or below the stop   -> stop fills at the open (gap through)
3. the low reaches the stop             -> stop fills at the stop price
   (when one bar touches both levels, the stop is assumed first: the conservative choice)
4. the high reaches the target          -> target fills at the target price

Around that rule, `ExitState` and `step` follow one position bar by bar: the levels it starts
from (percentages, ATR multiples or a confidence table), the stop raised by a trailing stop or a
break-even once a bar completes, and the market exits (time exit, liquidation) at a bar's open.
`step` is the reference the paper broker and the monitor follow; the replay engine
(core.backtest) applies the same rules to whole columns and is tested equal to it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import time
from decimal import Decimal
from enum import IntEnum
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from openbell.core.prices import price_to_units, round_to_tick, units_to_price


class ExitCode(IntEnum):
    NONE = 0
    TARGET = 1
    STOP = 2  # the stop as it stands: fixed, raised by the trailing stop or moved to the entry by the break-even
    EOD = 3  # the liquidation: at market, at the open of the first bar at or after the liquidation time
    TIME = 4  # the time exit: at market, at the open of the first bar at or after entry + time_exit_min


EARLY_CLOSE_OFFSET_MIN = 15  # on a half day the liquidation moves to this many minutes before the early close


@dataclass(frozen=True, slots=True)
class ExitPolicy:
    """When a position is closed: at its target, its stop, a time exit, or at the liquidation time.

    The defaults are +target_pct / -stop_pct from the entry fill and the liquidation; every other
    rule is off until set. An ATR multiple replaces the percentage when the position's ATR(14) is
    known (else the percentage applies); a confidence table picks the target percentage by the
    ranker's confidence. The trailing stop and the break-even only ever raise the stop.
    """

    target_pct: Decimal = Decimal("2.6")
    stop_pct: Decimal = Decimal("0.9")
    liquidation: time = time(15, 45)  # New York time; moved earlier on half days by the calendar
    target_atr: Decimal | None = None  # target = entry + target_atr x ATR(14)
    stop_atr: Decimal | None = None  # stop = entry - stop_atr x ATR(14)
    trail_pct: Decimal | None = None  # stop >= highest high since entry x (1 - trail_pct / 100)
    trail_atr: Decimal | None = None  # stop >= highest high since entry - trail_atr x ATR(14)
    breakeven_after_pct: Decimal | None = None  # stop >= entry once a completed bar's high reached +this %
    time_exit_min: int | None = None  # sell at market this many minutes after the entry
    confidence_targets: tuple[tuple[Decimal, Decimal], ...] = ()  # (min_confidence, target_pct), highest match wins

    def __post_init__(self) -> None:
        if not Decimal(0) < self.target_pct < Decimal(1000):
            raise ValueError(f"target_pct must be a positive percentage such as 2.6, got {self.target_pct}")
        if not Decimal(0) < self.stop_pct < Decimal(100):
            raise ValueError(f"stop_pct must be a percentage between 0 and 100 such as 0.9, got {self.stop_pct}")
        for name in ("target_atr", "stop_atr", "trail_atr", "breakeven_after_pct"):
            value = getattr(self, name)
            if value is not None and not Decimal(0) < value < Decimal(1000):
                raise ValueError(f"{name} must be positive (or unset), got {value}")
        if self.trail_pct is not None and not Decimal(0) < self.trail_pct < Decimal(100):
            raise ValueError(f"trail_pct must be a percentage between 0 and 100 such as 1.5, got {self.trail_pct}")
        if self.time_exit_min is not None and self.time_exit_min < 1:
            raise ValueError(f"time_exit_min must be at least 1 minute (or unset), got {self.time_exit_min}")
        table = tuple((Decimal(str(c)), Decimal(str(t))) for c, t in self.confidence_targets)
        for confidence, target in table:
            if not Decimal(0) <= confidence <= Decimal(1) or not Decimal(0) < target < Decimal(1000):
                raise ValueError(
                    "confidence_targets must be (min_confidence in [0, 1], target_pct > 0) pairs such as "
                    f"[(0.8, 2.6), (0.7, 1.8)], got {(confidence, target)}"
                )
        object.__setattr__(self, "confidence_targets", tuple(sorted(table, reverse=True)))

    @property
    def moves_stop(self) -> bool:
        """True when the stop can rise while the position is held (trailing stop or break-even)."""
        return self.trail_pct is not None or self.trail_atr is not None or self.breakeven_after_pct is not None

    @property
    def uses_pick_inputs(self) -> bool:
        """True when a position's levels depend on its scan ATR or its ranker's confidence."""
        return any(v is not None for v in (self.target_atr, self.stop_atr, self.trail_atr)) or bool(self.confidence_targets)

    def target_pct_for(self, confidence: float | None) -> Decimal:
        """The target percentage for a pick: the confidence table's highest row at or below it, else target_pct."""
        if confidence is not None and confidence == confidence:  # NaN: no confidence
            for least, target in self.confidence_targets:
                if confidence >= float(least):
                    return target
        return self.target_pct


@dataclass(frozen=True, slots=True)
class ExitLevels:
    """A position's exits as they start from its entry fill: tick-rounded Decimals."""

    target: Decimal
    stop: Decimal  # the fixed stop, raised to the trailing stop's level at the entry fill
    trail_pct: Decimal | None = None  # the trailing stop, in percent ...
    trail_amount: Decimal | None = None  # ... or in dollars (trail_atr x ATR, on the tick); at most one is set
    breakeven_at: Decimal | None = None  # a completed bar's high at or above this moves the stop to the entry


def atr_amount(multiple: Decimal, atr: Decimal) -> Decimal:
    """`multiple` x ATR as a price distance, rounded to the tick (so every path computes the same levels)."""
    return round_to_tick(multiple * atr)


def trail_stop(highest: Decimal, trail_pct: Decimal | None, trail_amount: Decimal | None) -> Decimal | None:
    """The trailing stop's level below `highest`, tick-rounded and never below 0; None without a trailing stop."""
    if trail_amount is not None:
        return max(round_to_tick(highest - trail_amount), Decimal(0))
    if trail_pct is not None:
        return round_to_tick(highest * (1 - trail_pct / 100))
    return None


def exit_levels_for(
    policy: ExitPolicy, entry: Decimal, atr: Decimal | None = None, confidence: float | None = None
) -> ExitLevels:
    """Target, initial stop and the stop's moves for a long entry filled at `entry`, computed once.

    `atr` is the scan's ATR(14) in dollars (None or 0: unknown, the percentages apply); `confidence`
    the ranker's confidence in the pick (None: target_pct). With the defaults this is
    `core.prices.exit_levels(entry, target_pct, stop_pct)`.
    """
    known = atr if atr is not None and atr > 0 else None
    if policy.target_atr is not None and known is not None:
        target = round_to_tick(entry + atr_amount(policy.target_atr, known))
    else:
        target = round_to_tick(entry * (1 + policy.target_pct_for(confidence) / 100))
    if policy.stop_atr is not None and known is not None:
        stop = max(round_to_tick(entry - atr_amount(policy.stop_atr, known)), Decimal(0))
    else:
        stop = round_to_tick(entry * (1 - policy.stop_pct / 100))
    trail_amount = atr_amount(policy.trail_atr, known) if policy.trail_atr is not None and known is not None else None
    trail_pct = policy.trail_pct if trail_amount is None else None
    trailed = trail_stop(entry, trail_pct, trail_amount)
    breakeven = policy.breakeven_after_pct
    return ExitLevels(
        target=target,
        stop=stop if trailed is None else max(stop, trailed),
        trail_pct=trail_pct,
        trail_amount=trail_amount,
        breakeven_at=None if breakeven is None else round_to_tick(entry * (1 + breakeven / 100)),
    )


def breakeven_stop(levels: ExitLevels, entry: Decimal, highest: Decimal | None) -> Decimal | None:
    """The stop a broker's pair must be raised to by the break-even, or None while nothing is to raise.

    `highest` is the highest high of the position's completed bars (None before the first completes).
    As in `step`: once it reached `levels.breakeven_at`, the stop for the following bars is at least the
    entry (tick-rounded). None when the break-even is off or not armed, or when the stop there already
    is at or above the entry (a trailing stop that rose past it).
    """
    if levels.breakeven_at is None or highest is None or highest < levels.breakeven_at:
        return None
    stop = levels.stop
    trailed = trail_stop(highest, levels.trail_pct, levels.trail_amount)
    if trailed is not None:
        stop = max(stop, trailed)
    entry = round_to_tick(entry)
    return entry if stop < entry else None


def bar_exits(
    open_: npt.ArrayLike, high: npt.ArrayLike, low: npt.ArrayLike, target: npt.ArrayLike, stop: npt.ArrayLike
) -> tuple[np.ndarray, np.ndarray]:
    """Decide, bar by bar, whether a long position's target or stop fills, and at what price.

    All arguments broadcast against each other (arrays of int64 units, or scalars).
    Returns (code, price): ExitCode values as int8, and the fill price in units (0 where NONE).
    """
    open_, high, low, target, stop = np.broadcast_arrays(open_, high, low, target, stop)
    target_at_open = open_ >= target
    stop_at_open = open_ <= stop
    stop_in_bar = low <= stop
    target_in_bar = high >= target

    stop_hit = ~target_at_open & (stop_at_open | stop_in_bar)
    target_hit = target_at_open | (~stop_hit & target_in_bar)

    code = np.where(stop_hit, np.int8(ExitCode.STOP), np.where(target_hit, np.int8(ExitCode.TARGET), np.int8(0)))
    price = np.where(
        target_at_open | (stop_hit & stop_at_open),
        open_,
        np.where(stop_hit, stop, np.where(target_hit, target, 0)),
    )
    return code.astype(np.int8, copy=False), price.astype(np.int64, copy=False)


def bar_triggers(open_: np.ndarray, high: np.ndarray, low: np.ndarray, target: np.ndarray, stop: np.ndarray) -> np.ndarray:
    """True where `bar_exits` decides an exit: the four branches folded into two comparisons."""
    return (np.maximum(high, open_) >= target) | (np.minimum(low, open_) <= stop)


def first_true(mask: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Index of the first True of `mask` in each [start, end) range, or -1 where there is none."""
    hits = np.flatnonzero(mask)
    if not len(hits):
        return np.full(len(starts), -1, dtype=np.int64)
    k = np.searchsorted(hits, starts)
    candidate = hits[np.minimum(k, len(hits) - 1)]
    return np.where((k < len(hits)) & (candidate < ends), candidate, -1)


def first_exits(
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    starts: np.ndarray,
    target: np.ndarray,
    stop: np.ndarray,
    active: np.ndarray | None = None,
    *,
    per_bar: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The first triggering bar of each position, over bars laid out position after position.

    `starts[i]` is the index of position i's first bar (its entry bar); its bars run to
    `starts[i + 1]` (or the end). `target[i]` and `stop[i]` are its levels (with `per_bar`, one
    level per bar instead: a stop that moves). Bars where the optional boolean `active` is False
    (after the liquidation time, say) never trigger.
    Returns (bar_index, code, price) per position; bar_index is -1 and code NONE when no bar triggers.

    Every bar is tested with `bar_triggers`; `bar_exits` then decides reason and price on each
    position's first triggering bar only.
    """
    starts = np.asarray(starts, dtype=np.int64)
    ends = np.append(starts[1:], len(open_))
    if not per_bar:
        lengths = ends - starts
        target, stop = np.repeat(target, lengths), np.repeat(stop, lengths)
    triggered = bar_triggers(open_, high, low, target, stop)
    if active is not None:
        triggered &= active
    bar_index = first_true(triggered, starts, ends)

    hit = bar_index >= 0
    at = bar_index[hit]
    codes = np.zeros(len(starts), dtype=np.int8)
    prices = np.zeros(len(starts), dtype=np.int64)
    codes[hit], prices[hit] = bar_exits(open_[at], high[at], low[at], target[at], stop[at])
    return bar_index, codes, prices


# --- one position, bar by bar: the reference ----------------------------------------------------


class ExitBar(NamedTuple):
    """One minute bar as the stepper reads it: `minute` since midnight New York, prices in $0.0001 units."""

    minute: int
    open: int
    high: int
    low: int


@dataclass(frozen=True, slots=True)
class ExitState:
    """One open long position between two bars. Prices in $0.0001 units."""

    entry: int
    target: int
    stop: int  # the stop for the next bar: never lowered
    highest: int  # highest high of the completed bars since the entry (0 before the first)
    liquidation_minute: int
    time_exit_minute: int | None
    breakeven_at: int | None
    trail_pct: Decimal | None
    trail_amount: Decimal | None

    @classmethod
    def opened(
        cls,
        policy: ExitPolicy,
        entry: Decimal,
        entry_minute: int,
        liquidation_minute: int,
        atr: Decimal | None = None,
        confidence: float | None = None,
    ) -> ExitState:
        """The state of a position filled at `entry` in the bar starting at `entry_minute` (that bar counts)."""
        levels = exit_levels_for(policy, entry, atr, confidence)
        return cls(
            entry=price_to_units(entry),
            target=price_to_units(levels.target),
            stop=price_to_units(levels.stop),
            highest=0,
            liquidation_minute=liquidation_minute,
            time_exit_minute=None if policy.time_exit_min is None else entry_minute + policy.time_exit_min,
            breakeven_at=None if levels.breakeven_at is None else price_to_units(levels.breakeven_at),
            trail_pct=levels.trail_pct,
            trail_amount=levels.trail_amount,
        )


@dataclass(frozen=True, slots=True)
class ExitDecision:
    """What one bar does to a position: `code` NONE keeps it; else it is sold at `price` (units, before slippage)."""

    code: ExitCode
    price: int
    stop: int  # the stop for the next bar (a monitor keeps its broker's stop order there)


def step(state: ExitState, bar: ExitBar) -> tuple[ExitState, ExitDecision]:
    """The next complete bar of an open position: the exit it triggers, or the state for the bar after.

    In order: a bar at or after the liquidation time sells at its open (EOD); one at or after the time
    exit sells at its open (TIME); else `bar_exits` with the target and the current stop. A bar that
    triggers nothing then counts as completed: its high may raise the trailing stop and arm the
    break-even, for the next bar only (within a bar the order of high and low is unknown).
    """
    if bar.minute >= state.liquidation_minute:
        return state, ExitDecision(ExitCode.EOD, bar.open, state.stop)
    if state.time_exit_minute is not None and bar.minute >= state.time_exit_minute:
        return state, ExitDecision(ExitCode.TIME, bar.open, state.stop)
    code, price = bar_exits(bar.open, bar.high, bar.low, state.target, state.stop)
    if code != ExitCode.NONE:
        return state, ExitDecision(ExitCode(int(code)), int(price), state.stop)
    highest = max(state.highest, bar.high)
    stop = state.stop
    trailed = trail_stop(units_to_price(highest), state.trail_pct, state.trail_amount)
    if trailed is not None:
        stop = max(stop, price_to_units(trailed))
    if state.breakeven_at is not None and highest >= state.breakeven_at:
        stop = max(stop, state.entry)
    return replace(state, highest=highest, stop=stop), ExitDecision(ExitCode.NONE, 0, stop)
