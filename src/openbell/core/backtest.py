"""The replay engine: the paper fill model applied to many market-on-open positions at once.

Bars of many sessions (a session = one symbol on one day) are laid out session after session,
each in time order, as numpy arrays. The engine enters each session at the open of its 09:30
bar (no such bar: unfilled), sets target and stop from the fill, finds the first exit with
`core.exits.first_exits` (the rule the paper broker and the live monitor use), and liquidates
the rest at the open of the first bar at or after the liquidation time, or at the last close.
Everything is integer arithmetic on $0.0001 units, so results equal the Decimal booking exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import numpy as np

from openbell.core.exits import ExitCode, ExitPolicy, first_exits, first_true
from openbell.core.prices import UNITS, scaled_to_tick

OPEN_MINUTE = 9 * 60 + 30
EOD = 3  # exit code of a liquidation, next to ExitCode.TARGET (1) and ExitCode.STOP (2)
_NEVER = np.iinfo(np.int64).max
REASONS = {int(ExitCode.TARGET): "target", int(ExitCode.STOP): "stop", EOD: "eod"}


@dataclass(frozen=True, slots=True)
class SessionBars:
    """Minute bars of many sessions: session i owns bars starts[i] .. starts[i+1]-1."""

    starts: np.ndarray  # int64, one per session
    minute: np.ndarray  # int32 minutes since midnight New York of each bar's start
    open: np.ndarray  # int64 units
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray

    @property
    def n_bars(self) -> int:
        return len(self.open)

    @property
    def ends(self) -> np.ndarray:
        return np.append(self.starts[1:], self.n_bars)


@dataclass(frozen=True, slots=True)
class FillCosts:
    """Commission max(minimum, per_share x shares) per order, and slippage on market fills."""

    per_share: Decimal = Decimal("0.005")
    minimum: Decimal = Decimal("1.00")
    slippage_bps: Decimal = Decimal(0)

    def commission_units(self, shares: np.ndarray) -> np.ndarray:
        per_share = int(self.per_share * UNITS)
        if Decimal(per_share) != self.per_share * UNITS:
            raise ValueError(f"per-share commission {self.per_share} is finer than $0.0001")
        return np.maximum(int(self.minimum * UNITS), per_share * np.asarray(shares, dtype=np.int64))


@dataclass(frozen=True, slots=True)
class SessionResults:
    """One entry per session. Prices and P&L in $0.0001 units; indexes into the bar arrays."""

    filled: np.ndarray  # bool: the entry filled at the opening print
    entry_index: np.ndarray
    entry_price: np.ndarray
    target: np.ndarray
    stop: np.ndarray
    exit_index: np.ndarray  # -1 when the liquidation filled at the last close after the session's bars
    exit_price: np.ndarray
    exit_code: np.ndarray  # ExitCode.TARGET, ExitCode.STOP or EOD; 0 when unfilled
    commission: np.ndarray
    pnl: np.ndarray


def replay_sessions(
    bars: SessionBars,
    shares: np.ndarray,
    liquidation_minute: np.ndarray | int,
    policy: ExitPolicy = ExitPolicy(),
    costs: FillCosts = FillCosts(),
) -> SessionResults:
    """Buy `shares[i]` of session i at its opening print and exit by the paper fill model.

    Market fills (entry, stop, liquidation) take `costs.slippage_bps`; the target is a limit
    order and fills at its price (or at a better open) without slippage.
    """
    starts, ends = bars.starts, bars.ends
    shares = np.asarray(shares, dtype=np.int64)
    n_sessions = len(starts)
    lengths = ends - starts
    liquidation = np.broadcast_to(np.asarray(liquidation_minute, dtype=np.int32), (n_sessions,))
    # Pad with one dummy bar so that sessions without bars can index safely; they never fill.
    minute = np.append(bars.minute, -1)
    open_, close = np.append(bars.open, 0), np.append(bars.close, 0)

    filled = (lengths > 0) & (minute[starts] == OPEN_MINUTE) & (shares > 0)
    buy_slip, sell_slip = 1 + costs.slippage_bps / 10_000, 1 - costs.slippage_bps / 10_000
    entry = np.where(filled, scaled_to_tick(open_[starts], buy_slip), 0)
    target = scaled_to_tick(entry, 1 + policy.target_pct / 100)
    stop = scaled_to_tick(entry, 1 - policy.stop_pct / 100)

    # Unfilled sessions get levels no bar reaches, instead of a per-bar mask.
    target = np.where(filled, target, _NEVER)
    stop = np.where(filled, stop, -1)
    if np.ndim(liquidation_minute) == 0:
        before_liquidation = bars.minute < liquidation_minute
    else:
        before_liquidation = bars.minute < np.repeat(liquidation, lengths)
    exit_index, exit_code, exit_price = first_exits(bars.open, bars.high, bars.low, starts, target, stop, before_liquidation)
    # The stop becomes a market order when triggered and takes slippage; the target is a limit.
    exit_price = np.where(
        exit_code == ExitCode.STOP, scaled_to_tick(exit_price, sell_slip), scaled_to_tick(exit_price, Decimal(1))
    )

    # Liquidation: the open of the first bar at or after the liquidation time, else the last close.
    to_liquidate = filled & (exit_code == ExitCode.NONE)
    liquidation_bar = first_true(~before_liquidation, starts, ends)
    at_open = to_liquidate & (liquidation_bar >= 0)
    eod_price = np.where(at_open, open_[liquidation_bar], close[np.maximum(ends - 1, 0)])
    exit_price = np.where(to_liquidate, scaled_to_tick(eod_price, sell_slip), exit_price)
    exit_index = np.where(at_open, liquidation_bar, np.where(to_liquidate, -1, exit_index))
    exit_code = np.where(to_liquidate, EOD, exit_code).astype(np.int8)

    commission = np.where(filled, 2 * costs.commission_units(shares), 0)
    return SessionResults(
        filled=filled,
        entry_index=np.where(filled, starts, -1),
        entry_price=entry,
        target=np.where(filled, target, 0),
        stop=np.where(filled, stop, 0),
        exit_index=np.where(filled, exit_index, -1),
        exit_price=np.where(filled, exit_price, 0),
        exit_code=exit_code,
        commission=commission,
        pnl=np.where(filled, (exit_price - entry) * shares - commission, 0),
    )


def select_sessions(bars: SessionBars, sessions: np.ndarray) -> SessionBars:
    """The bars of `sessions` (indexes into `bars.starts`), laid out one after another in that order."""
    sessions = np.asarray(sessions, dtype=np.int64)
    starts, lengths = bars.starts[sessions], (bars.ends - bars.starts)[sessions]
    new_starts = np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64) if len(sessions) else sessions
    # Each kept bar's index in `bars`: its session's start plus its offset within the session.
    index = np.repeat(starts - new_starts, lengths) + np.arange(int(lengths.sum()), dtype=np.int64)
    return SessionBars(
        starts=new_starts,
        minute=bars.minute[index],
        open=bars.open[index],
        high=bars.high[index],
        low=bars.low[index],
        close=bars.close[index],
    )


@dataclass(frozen=True, slots=True)
class Excursions:
    """How far each filled session's price went while held, and on its whole day; units, 0 where unfilled."""

    highest: np.ndarray  # highest high from the entry bar to the exit bar (the session's end after a last-close exit)
    lowest: np.ndarray  # lowest low over the same bars
    day_high: np.ndarray  # highest high of the whole session (the "missed move" from the opening print)
    high_before_liquidation: np.ndarray  # highest high from the entry to the liquidation time, whatever the exit


def excursions(bars: SessionBars, results: SessionResults, liquidation_minute: np.ndarray | int) -> Excursions:
    """Best and worst prices while each position was held, and what the session offered (for MFE, MAE, missed moves).

    The entry bar counts whole (the position is held from its open), and so does the exit bar.
    """
    starts, ends = bars.starts, bars.ends
    filled = results.filled & (ends > starts)
    held_end = np.where(results.exit_index >= 0, results.exit_index + 1, ends)
    liquidation = np.broadcast_to(np.asarray(liquidation_minute, dtype=np.int32), (len(starts),))
    before = bars.minute < np.repeat(liquidation, ends - starts)
    first_after = first_true(~before, starts, ends)
    open_end = np.where(first_after >= 0, first_after, ends)
    return Excursions(
        highest=_ranged(np.maximum, bars.high, starts, held_end, filled),
        lowest=_ranged(np.minimum, bars.low, starts, held_end, filled),
        day_high=_ranged(np.maximum, bars.high, starts, ends, filled),
        high_before_liquidation=_ranged(np.maximum, bars.high, starts, np.maximum(open_end, starts + 1), filled),
    )


def _ranged(ufunc: np.ufunc, values: np.ndarray, begins: np.ndarray, ends: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """`ufunc.reduce` of values[begins[i]:ends[i]] for every i where mask holds (ranges in order, not empty); else 0."""
    out = np.zeros(len(begins), dtype=values.dtype)
    if not mask.any():
        return out
    b, e = begins[mask], ends[mask]
    bounds = np.column_stack((b, e)).ravel()
    padded = np.append(values, values[-1:])  # reduceat may point one past the end
    out[mask] = ufunc.reduceat(padded, bounds)[::2]
    return out
