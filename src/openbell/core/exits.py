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
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import time
from decimal import Decimal
from enum import IntEnum

import numpy as np


class ExitCode(IntEnum):
    NONE = 0
    TARGET = 1
    STOP = 2


@dataclass(frozen=True, slots=True)
class ExitPolicy:
    """When a position is closed: +target_pct, -stop_pct, or at the liquidation time."""

    target_pct: Decimal = Decimal("2.6")
    stop_pct: Decimal = Decimal("0.9")
    liquidation: time = time(15, 45)  # New York time; moved earlier on half days by the calendar

    def __post_init__(self) -> None:
        if not Decimal(0) < self.target_pct < Decimal(1000):
            raise ValueError(f"target_pct must be a positive percentage such as 2.6, got {self.target_pct}")
        if not Decimal(0) < self.stop_pct < Decimal(100):
            raise ValueError(f"stop_pct must be a percentage between 0 and 100 such as 0.9, got {self.stop_pct}")


def bar_exits(
    open_: np.ndarray, high: np.ndarray, low: np.ndarray, target: np.ndarray, stop: np.ndarray
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
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The first triggering bar of each position, over bars laid out position after position.

    `starts[i]` is the index of position i's first bar (its entry bar); its bars run to
    `starts[i + 1]` (or the end). `target[i]` and `stop[i]` are its levels. Bars where the
    optional boolean `active` is False (after the liquidation time, say) never trigger.
    Returns (bar_index, code, price) per position; bar_index is -1 and code NONE when no bar triggers.

    Every bar is tested with `bar_triggers`; `bar_exits` then decides reason and price on each
    position's first triggering bar only.
    """
    starts = np.asarray(starts, dtype=np.int64)
    ends = np.append(starts[1:], len(open_))
    lengths = ends - starts
    triggered = bar_triggers(open_, high, low, np.repeat(target, lengths), np.repeat(stop, lengths))
    if active is not None:
        triggered &= active
    bar_index = first_true(triggered, starts, ends)

    hit = bar_index >= 0
    at = bar_index[hit]
    codes = np.zeros(len(starts), dtype=np.int8)
    prices = np.zeros(len(starts), dtype=np.int64)
    codes[hit], prices[hit] = bar_exits(open_[at], high[at], low[at], np.asarray(target)[hit], np.asarray(stop)[hit])
    return bar_index, codes, prices
