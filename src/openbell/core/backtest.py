"""The replay engine: the paper fill model applied to many market-on-open positions at once.

Bars of many sessions (a session = one symbol on one day) are laid out session after session,
each in time order, as numpy arrays. The engine enters each session at the open of its 09:30
bar (no such bar: unfilled), sets target and stop from the fill, finds the first exit with
`core.exits.first_exits` (the rule the paper broker and the live monitor use), and liquidates
the rest at the open of the first bar at or after the liquidation time, or at the last close.
Everything is integer arithmetic on $0.0001 units, so results equal the Decimal booking exactly.

The policy's other rules are the scalar stepper's (`core.exits.step`) in columns: levels from ATR
multiples or a confidence table per session, a stop that moves bar by bar (the running maximum of
the highs of each session's completed bars, by one `np.maximum.accumulate` over sessions lifted
apart), and the time exit as an earlier cut-off. With them off, the engine takes the short path.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import numpy as np

from openbell.core.exits import ExitCode, ExitPolicy, first_exits, first_true
from openbell.core.prices import COMMISSION_MINIMUM, COMMISSION_PER_SHARE, UNITS, commission, scaled_to_tick, shifted_to_tick

OPEN_MINUTE = 9 * 60 + 30
EOD = int(ExitCode.EOD)  # exit code of a liquidation (3), next to ExitCode.TARGET (1), STOP (2) and TIME (4)
_NEVER = np.iinfo(np.int64).max
KILL_SWITCH = 9  # exit code of a position flattened when the day's loss limit tripped (core.risk)
DAY_TARGET = 10  # exit code of a position flattened when the day's profit target was reached (core.risk)
REASONS = {
    int(ExitCode.TARGET): "target",
    int(ExitCode.STOP): "stop",
    EOD: "eod",
    int(ExitCode.TIME): "time",
    KILL_SWITCH: "kill_switch",
    DAY_TARGET: "day_target",
}


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
    """Commission max(minimum, per_share x shares) per order, and slippage on market fills.

    `max_participation_pct` caps the share of a bar's volume one order may fill in the paper broker
    (the rest waits for the following bars); None: no cap. The replay engine here fills whole orders
    and does not model it.
    """

    per_share: Decimal = COMMISSION_PER_SHARE
    minimum: Decimal = COMMISSION_MINIMUM
    slippage_bps: Decimal = Decimal(0)
    max_participation_pct: Decimal | None = None

    def commission(self, shares: int) -> Decimal:
        """The commission of an order that has filled `shares` in all (none for none)."""
        return commission(shares, self.per_share, self.minimum) if shares else Decimal(0)

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
    exit_code: np.ndarray  # ExitCode.TARGET, STOP, EOD or TIME; 0 when unfilled
    commission: np.ndarray
    pnl: np.ndarray


def replay_sessions(
    bars: SessionBars,
    shares: np.ndarray,
    liquidation_minute: np.ndarray | int,
    policy: ExitPolicy = ExitPolicy(),
    costs: FillCosts = FillCosts(),
    atr: np.ndarray | None = None,
    confidence: np.ndarray | None = None,
) -> SessionResults:
    """Buy `shares[i]` of session i at its opening print and exit by the paper fill model.

    Market fills (entry, stop, time exit, liquidation) take `costs.slippage_bps`; the target is a
    limit order and fills at its price (or at a better open) without slippage. `atr[i]` is session
    i's ATR(14) in $0.0001 units (0: unknown) and `confidence[i]` the ranker's confidence (NaN:
    none), for the policy's ATR multiples and confidence table; each session then exits as
    `core.exits.step` decides bar by bar.
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
    atr = None if atr is None else np.asarray(atr, dtype=np.int64)
    target, stop, moves = _levels(policy, entry, atr, confidence)

    # Unfilled sessions get levels no bar reaches, instead of a per-bar mask.
    target = np.where(filled, target, _NEVER)
    stop = np.where(filled, stop, -1)
    cutoff = liquidation  # exits are checked on bars before it; the first bar at or after it sells at its open
    if policy.time_exit_min is not None:
        cutoff = np.minimum(liquidation, OPEN_MINUTE + policy.time_exit_min)
    if np.ndim(liquidation_minute) == 0 and policy.time_exit_min is None:
        before_liquidation = bars.minute < liquidation_minute
    else:
        before_liquidation = bars.minute < np.repeat(cutoff, lengths)
    if policy.moves_stop:
        stops = np.where(np.repeat(filled, lengths), _moving_stops(bars, lengths, entry, stop, moves), -1)
        exit_index, exit_code, exit_price = first_exits(
            bars.open, bars.high, bars.low, starts, np.repeat(target, lengths), stops, before_liquidation, per_bar=True
        )
    else:
        exit_index, exit_code, exit_price = first_exits(
            bars.open, bars.high, bars.low, starts, target, stop, before_liquidation
        )
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
    market_exit: np.ndarray | int = EOD
    if policy.time_exit_min is not None:  # the first bar at or after the time exit, before the liquidation time
        market_exit = np.where(at_open & (minute[liquidation_bar] < liquidation), int(ExitCode.TIME), EOD)
    exit_code = np.where(to_liquidate, market_exit, exit_code).astype(np.int8)

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


@dataclass(frozen=True, slots=True)
class _StopMoves:
    """How the stops move while held: the trailing stop and the break-even, per session (None: off)."""

    trail_pct: Decimal | None  # one percentage for every session ...
    trail_amount: np.ndarray | None  # ... or an amount in units per session (-1 where the ATR is unknown)
    breakeven_at: np.ndarray | None  # units per session


def _levels(
    policy: ExitPolicy, entry: np.ndarray, atr: np.ndarray | None, confidence: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, _StopMoves]:
    """Target, initial stop and stop moves per session, as `core.exits.exit_levels_for` computes them one by one."""
    target = scaled_to_tick(entry, 1 + policy.target_pct / 100)
    if policy.confidence_targets and confidence is not None:
        confidence = np.asarray(confidence, dtype=np.float64)
        chosen = np.zeros(len(entry), dtype=bool)
        for least, target_pct in policy.confidence_targets:  # highest minimum first: the first match wins
            match = ~chosen & (confidence >= float(least))  # NaN matches nothing
            target = np.where(match, scaled_to_tick(entry, 1 + target_pct / 100), target)
            chosen |= match
    stop = scaled_to_tick(entry, 1 - policy.stop_pct / 100)
    trail_amount = None
    if atr is not None:
        known = atr > 0
        if policy.target_atr is not None:  # multiple x ATR on the tick, as core.exits.atr_amount
            target = np.where(known, shifted_to_tick(entry, scaled_to_tick(atr, policy.target_atr)), target)
        if policy.stop_atr is not None:
            stop = np.where(known, np.maximum(shifted_to_tick(entry, -scaled_to_tick(atr, policy.stop_atr)), 0), stop)
        if policy.trail_atr is not None:
            trail_amount = np.where(known, scaled_to_tick(atr, policy.trail_atr), -1)
    breakeven = policy.breakeven_after_pct
    moves = _StopMoves(
        trail_pct=policy.trail_pct,
        trail_amount=trail_amount,
        breakeven_at=None if breakeven is None else scaled_to_tick(entry, 1 + breakeven / 100),
    )
    trailed = _trail(entry, moves)
    return target, (stop if trailed is None else np.maximum(stop, trailed)), moves


def _trail(highest: np.ndarray, moves: _StopMoves, lengths: np.ndarray | None = None) -> np.ndarray | None:
    """The trailing stop's level below `highest` (per session, or per bar given the sessions' `lengths`)."""
    if moves.trail_amount is None and moves.trail_pct is None:
        return None
    percent = None if moves.trail_pct is None else scaled_to_tick(highest, 1 - moves.trail_pct / 100)
    if moves.trail_amount is None:
        return percent
    amount = moves.trail_amount if lengths is None else np.repeat(moves.trail_amount, lengths)
    by_amount = np.maximum(shifted_to_tick(highest, -np.maximum(amount, 0)), 0)
    # Where the ATR is unknown (amount -1), the percentage applies, or no trailing stop at all.
    return np.where(amount >= 0, by_amount, -1 if percent is None else percent)


def _moving_stops(
    bars: SessionBars, lengths: np.ndarray, entry: np.ndarray, stop: np.ndarray, moves: _StopMoves
) -> np.ndarray:
    """The stop in force on every bar: the initial stop, raised by the trailing stop and the break-even.

    The level on bar t comes from the highs of its session's bars before t (completed bars): a running
    maximum per session, by one cumulative maximum over the sessions lifted apart (session k's highs
    plus k x (the highest high + 1), so no maximum reaches into the next session), shifted by one bar.
    """
    stops = np.repeat(stop, lengths)
    if not bars.n_bars:
        return stops
    session = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
    lift = int(bars.high.max()) + 1
    if len(lengths) * lift >= 2**62:
        raise OverflowError("too many sessions at too high prices for the integer running maximum; replay fewer at once")
    lifted = session * lift
    running = np.maximum.accumulate(bars.high + lifted) - lifted
    highest = np.empty_like(running)
    highest[1:] = running[:-1]
    highest[bars.starts[lengths > 0]] = 0  # no completed bar yet on a session's first bar
    trailed = _trail(highest, moves, lengths)
    if trailed is not None:
        stops = np.maximum(stops, trailed)
    if moves.breakeven_at is not None:
        armed = highest >= np.repeat(moves.breakeven_at, lengths)
        stops = np.where(armed, np.maximum(stops, np.repeat(entry, lengths)), stops)
    return stops


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
