"""Exit-policy sweeps: every target x stop x liquidation time over the same entries, without a replay each.

A sweep holds the entries fixed (the same sessions, shares and fills at the opening print as
`core.backtest.replay_sessions`) and asks what every combination of target %, stop % and
liquidation time would have made. Each combination's result equals, field for field, the replay
of that one policy.

How, without one replay per combination: a long position's target fills on the first bar whose
max(open, high) reaches it, its stop on the first bar whose min(open, low) reaches it. Within a
session the running maximum of max(open, high) never decreases; shifted by a per-session offset
it is sorted across all sessions, so one `np.searchsorted` finds the first crossing of every
(session, target level) pair (the stops likewise, on the negated running minimum). A combination
exits at the earlier of its target's and its stop's crossing when that bar starts before the
liquidation time; when both cross on the same bar, `core.exits.bar_exits` decides reason and price
on that bar, as it does for the replay. Everything is integer arithmetic on $0.0001 units.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import numpy as np

from openbell.core.backtest import EOD, OPEN_MINUTE, FillCosts, SessionBars, SessionResults
from openbell.core.exits import ExitCode, ExitPolicy, bar_exits
from openbell.core.prices import scaled_to_tick

_NEVER = np.iinfo(np.int64).max  # a target no bar reaches
_NO_STOP = np.iinfo(np.int64).min  # a stop no bar reaches
_LARGEST_KEY = 2**62


def _as_percent(value: Decimal | int | str) -> Decimal:
    if isinstance(value, float):
        raise TypeError(f"pass percentages exactly, as Decimal('2.6') or '2.6', not the float {value!r}")
    return Decimal(value)


@dataclass(frozen=True, slots=True, eq=False)
class ExitGrid:
    """The exit policies a sweep tries: every target x every stop x every liquidation choice.

    `liquidation_minutes` has one row per liquidation choice and one column per session (minutes
    since midnight New York), because a half day moves the liquidation earlier for its sessions
    only; a single column, as in [[945], [720]], applies the same minute to every session.
    Combinations are numbered target-major: c = (target_index x n_stops + stop_index) x
    n_liquidations + liquidation_index, so a (n_combinations, ...) array reshapes to
    (n_targets, n_stops, n_liquidations, ...).
    """

    targets_pct: tuple[Decimal, ...]  # positive percentages, such as 2.6 for +2.6%
    stops_pct: tuple[Decimal, ...]  # percentages below 100, such as 0.9 for -0.9%
    liquidation_minutes: np.ndarray  # int64, (n_liquidations, n_sessions) or (n_liquidations, 1)

    def __post_init__(self) -> None:
        targets = tuple(_as_percent(t) for t in self.targets_pct)
        stops = tuple(_as_percent(s) for s in self.stops_pct)
        if not targets or not stops:
            raise ValueError("an exit grid needs at least one target and one stop percentage")
        for target in targets:
            ExitPolicy(target_pct=target)  # the policy's own checks, so both reject the same values
        for stop in stops:
            ExitPolicy(stop_pct=stop)
        minutes = np.array(self.liquidation_minutes, dtype=np.int64)
        if minutes.ndim != 2 or minutes.shape[0] == 0:
            raise ValueError(
                "liquidation_minutes needs one row per liquidation choice and one column per session "
                f"(or a single column for every session, as in [[945], [720]]), got shape {minutes.shape}"
            )
        minutes.setflags(write=False)
        object.__setattr__(self, "targets_pct", targets)
        object.__setattr__(self, "stops_pct", stops)
        object.__setattr__(self, "liquidation_minutes", minutes)

    @property
    def n_targets(self) -> int:
        return len(self.targets_pct)

    @property
    def n_stops(self) -> int:
        return len(self.stops_pct)

    @property
    def n_liquidations(self) -> int:
        return len(self.liquidation_minutes)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(n_targets, n_stops, n_liquidations): reshape a per-combination axis to this."""
        return self.n_targets, self.n_stops, self.n_liquidations

    @property
    def n_combinations(self) -> int:
        return self.n_targets * self.n_stops * self.n_liquidations


@dataclass(frozen=True, slots=True, eq=False)
class SweepResults:
    """Every combination of an `ExitGrid` over the same sessions. Prices and P&L in $0.0001 units.

    The combination table: `target_index`, `stop_index`, `liquidation_index` (n_combinations,)
    index into the grid; `target_pct` and `stop_pct` give the percentages themselves.
    Per session, shared by every combination: `filled`, `entry_index`, `entry_price`, `commission`
    (n_sessions,), and the levels per target and per stop choice (n_targets or n_stops, n_sessions).
    Per combination and session, (n_combinations, n_sessions), as `SessionResults` reports them.
    """

    grid: ExitGrid
    target_index: np.ndarray  # (n_combinations,)
    stop_index: np.ndarray
    liquidation_index: np.ndarray
    filled: np.ndarray  # (n_sessions,) bool: the entry filled at the opening print
    entry_index: np.ndarray  # -1 when unfilled
    entry_price: np.ndarray
    commission: np.ndarray  # both orders; 0 when unfilled
    target_levels: np.ndarray  # (n_targets, n_sessions); 0 when unfilled
    stop_levels: np.ndarray  # (n_stops, n_sessions); 0 when unfilled
    exit_code: np.ndarray  # (n_combinations, n_sessions) int8: ExitCode.TARGET, ExitCode.STOP or EOD; 0 unfilled
    exit_index: np.ndarray  # bar index; -1 when unfilled or liquidated at the last close after the session's bars
    exit_price: np.ndarray
    pnl: np.ndarray  # after both commissions; 0 when unfilled

    @property
    def target_pct(self) -> tuple[Decimal, ...]:
        """The target percentage of each combination."""
        return tuple(self.grid.targets_pct[k] for k in self.target_index)

    @property
    def stop_pct(self) -> tuple[Decimal, ...]:
        """The stop percentage of each combination."""
        return tuple(self.grid.stops_pct[m] for m in self.stop_index)

    def policy(self, combination: int) -> ExitPolicy:
        """The target and stop of one combination (its liquidation is a row of the grid's minutes)."""
        return ExitPolicy(
            target_pct=self.grid.targets_pct[self.target_index[combination]],
            stop_pct=self.grid.stops_pct[self.stop_index[combination]],
        )

    def session_results(self, combination: int) -> SessionResults:
        """One combination as `replay_sessions` reports it."""
        return SessionResults(
            filled=self.filled,
            entry_index=self.entry_index,
            entry_price=self.entry_price,
            target=self.target_levels[self.target_index[combination]],
            stop=self.stop_levels[self.stop_index[combination]],
            exit_index=self.exit_index[combination],
            exit_price=self.exit_price[combination],
            exit_code=self.exit_code[combination],
            commission=self.commission,
            pnl=self.pnl[combination],
        )


def _first_bars(keys: np.ndarray, levels: np.ndarray, lowest: int, highest: int, span: int) -> np.ndarray:
    """First bar of each session whose key reaches each level: (n_levels, n_sessions) bar indexes.

    `keys` are sorted, session i's running values plus i x `span`, all between `lowest` and
    `highest` before the offset; `levels` is (n_levels, n_sessions) in the same scale. A result at
    or past the session's end means that no bar of the session reaches the level.
    """
    n_sessions = levels.shape[1]
    # Session-major queries are sorted when the levels are, which keeps the search cache-friendly.
    queries = np.clip(levels.T, lowest, highest + 1) + (np.arange(n_sessions, dtype=np.int64) * span)[:, None]
    return np.ascontiguousarray(np.searchsorted(keys, queries.ravel()).reshape(n_sessions, -1).T)


def _crossings(
    bars: SessionBars, lengths: np.ndarray, targets: np.ndarray, stops: np.ndarray, liquidation: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The first bar of each session at which each target, stop and liquidation minute is reached.

    Returns (target_bar, stop_bar, liquidation_bar), each (n_levels, n_sessions): the first bar whose
    max(open, high) >= the target, whose min(open, low) <= the stop, whose minute >= the liquidation
    minute; at or past the session's end where there is none.
    """
    running_high = np.maximum(bars.open, bars.high).astype(np.int64, copy=False)
    running_low = np.minimum(bars.open, bars.low).astype(np.int64, copy=False)
    lowest, highest = int(running_low.min()), int(running_high.max())  # min(open, low) <= max(open, high)
    first_minute, last_minute = int(bars.minute.min()), int(bars.minute.max())
    # One more than the widest range, so that no session's keys reach the next session's.
    span = max(highest - lowest, last_minute - first_minute) + 2
    n_sessions = len(lengths)
    if span * (n_sessions + 1) + max(abs(lowest), abs(highest)) >= _LARGEST_KEY:
        raise OverflowError(
            f"{n_sessions} sessions with prices up to {highest} units are too many for one sweep; split them"
        )

    offset = np.repeat(np.arange(n_sessions, dtype=np.int64) * span, lengths)
    running_high += offset
    np.maximum.accumulate(running_high, out=running_high)
    target_bar = _first_bars(running_high, targets, lowest, highest, span)
    del running_high
    # The stop, on the running maximum of -min(open, low): min(open, low) <= stop as -min >= -stop.
    np.subtract(offset, running_low, out=running_low)
    np.maximum.accumulate(running_low, out=running_low)
    stop_bar = _first_bars(running_low, -stops, -highest, -lowest, span)
    del running_low
    offset += bars.minute
    if np.any(offset[1:] < offset[:-1]):
        raise ValueError("the bars of each session must be in time order (SessionBars lays them out so)")
    liquidation_bar = _first_bars(offset, liquidation, first_minute, last_minute, span)
    return target_bar, stop_bar, liquidation_bar


def _exits_at(
    bars: SessionBars, bar_index: np.ndarray, target: np.ndarray | int, stop: np.ndarray | int, reached: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """`bar_exits` at `bar_index` where `reached`: (code, price), 0 elsewhere."""
    at = bar_index[reached]
    target = np.broadcast_to(target, bar_index.shape)[reached]
    stop = np.broadcast_to(stop, bar_index.shape)[reached]
    code = np.zeros(bar_index.shape, dtype=np.int8)
    price = np.zeros(bar_index.shape, dtype=np.int64)
    code[reached], price[reached] = bar_exits(bars.open[at], bars.high[at], bars.low[at], target, stop)
    return code, price


def _booked(code: np.ndarray, price: np.ndarray, sell_slip: Decimal) -> np.ndarray:
    """The price a triggered exit books: the stop is a market order and slips; the target is a limit."""
    return np.where(code == ExitCode.STOP, scaled_to_tick(price, sell_slip), scaled_to_tick(price, Decimal(1)))


def _choose(condition: np.ndarray, if_true: np.ndarray, if_false: np.ndarray, out: np.ndarray) -> None:
    """`np.where(condition, if_true, if_false)` written into `out`, without branches: np.where is
    several times slower on the unpredictable masks of a sweep."""
    np.subtract(if_true, if_false, out=out)
    np.multiply(out, condition, out=out)
    np.add(out, if_false, out=out)


def sweep_exits(bars: SessionBars, shares: np.ndarray, grid: ExitGrid, costs: FillCosts = FillCosts()) -> SweepResults:
    """Every combination of `grid` over the same entries, each equal to its `replay_sessions`.

    Combination c, of target k, stop m and liquidation j, holds what
    `replay_sessions(bars, shares, grid.liquidation_minutes[j], ExitPolicy(targets_pct[k], stops_pct[m]), costs)`
    returns, field for field. The bars of each session must be in time order, as SessionBars lays them out.
    Memory: four (n_combinations, n_sessions) result arrays, 25 bytes per pair, plus about four arrays
    of n_bars int64 while the crossings are searched.

    Raises:
        ValueError: `shares` or the grid's liquidation minutes do not match the sessions, or a
            session's bars are out of time order.
        OverflowError: prices and sessions too large for 64-bit keys; sweep fewer sessions at once.
    """
    starts = np.asarray(bars.starts, dtype=np.int64)
    ends = bars.ends.astype(np.int64)
    n_sessions, n_bars = len(starts), bars.n_bars
    lengths = ends - starts
    shares = np.asarray(shares, dtype=np.int64)
    if shares.shape != (n_sessions,):
        raise ValueError(f"shares needs one entry per session ({n_sessions}), got shape {shares.shape}")
    if grid.liquidation_minutes.shape[1] not in (1, n_sessions):
        raise ValueError(
            f"the grid's liquidation_minutes have {grid.liquidation_minutes.shape[1]} columns; "
            f"give one per session ({n_sessions}) or a single column"
        )
    liquidation = np.broadcast_to(grid.liquidation_minutes, (grid.n_liquidations, n_sessions))
    buy_slip, sell_slip = 1 + costs.slippage_bps / 10_000, 1 - costs.slippage_bps / 10_000

    # The entries and levels, as replay_sessions sets them.
    has_bars = lengths > 0
    filled = has_bars & (shares > 0)
    filled[has_bars] &= bars.minute[starts[has_bars]] == OPEN_MINUTE
    opening = np.zeros(n_sessions, dtype=np.int64)
    opening[has_bars] = bars.open[starts[has_bars]]
    entry = np.where(filled, scaled_to_tick(opening, buy_slip), 0)
    commission = np.where(filled, 2 * costs.commission_units(shares), 0)
    targets = np.stack([scaled_to_tick(entry, 1 + pct / 100) for pct in grid.targets_pct])
    stops = np.stack([scaled_to_tick(entry, 1 - pct / 100) for pct in grid.stops_pct])

    if filled.any():
        target_bar, stop_bar, liquidation_bar = _crossings(bars, lengths, targets, stops, liquidation)
    else:  # nothing to exit, and perhaps no bars to search
        target_bar = np.full(targets.shape, n_bars)
        stop_bar = np.full(stops.shape, n_bars)
        liquidation_bar = np.full(liquidation.shape, n_bars)
    # Past every session's end where a level is not reached or the session is unfilled: n_bars for
    # a target and n_bars + 1 for a stop, so that equal bars always mean one bar reaching both.
    target_bar[(target_bar >= ends) | ~filled] = n_bars
    stop_bar[(stop_bar >= ends) | ~filled] = n_bars + 1

    # A bar that reaches only one of the two levels: bar_exits, with the other level out of reach, decides.
    target_code, target_price = _exits_at(bars, target_bar, targets, _NO_STOP, target_bar < n_bars)
    target_price = _booked(target_code, target_price, sell_slip)
    stop_code, stop_price = _exits_at(bars, stop_bar, _NEVER, stops, stop_bar < n_bars)
    stop_price = _booked(stop_code, stop_price, sell_slip)
    target_pnl = (target_price - entry) * shares - commission
    stop_pnl = (stop_price - entry) * shares - commission

    # Liquidation: the open of the first bar at or after the liquidation minute, else the last close.
    at_open = liquidation_bar < ends
    active_end = np.minimum(liquidation_bar, ends)  # levels are checked on the bars before this one only
    eod_bar = np.where(at_open, liquidation_bar, np.maximum(ends - 1, 0))
    eod_price = np.where(at_open, bars.open[eod_bar], bars.close[eod_bar]) if n_bars else np.zeros_like(eod_bar)
    eod_price = np.where(filled, scaled_to_tick(eod_price, sell_slip), 0)
    eod_code = np.where(filled, np.int8(EOD), np.int8(0))  # the same for every liquidation choice
    eod_index = np.where(filled & at_open, liquidation_bar, -1)
    eod_pnl = np.where(filled, (eod_price - entry) * shares - commission, 0)

    # Every combination, one target at a time, so that the (n_stops, n_sessions) temporaries stay in cache.
    n_targets, n_stops, n_liquidations = grid.shape
    codes = np.empty((n_targets, n_stops, n_liquidations, n_sessions), dtype=np.int8)
    exit_index = np.empty(codes.shape, dtype=np.int64)
    exit_price = np.empty(codes.shape, dtype=np.int64)
    pnl = np.empty(codes.shape, dtype=np.int64)
    index_type = np.int32 if n_bars < np.iinfo(np.int32).max else np.int64
    target_bar, stop_bar, active_end = (a.astype(index_type) for a in (target_bar, stop_bar, active_end))
    first = np.empty(stop_bar.shape, dtype=index_type)
    stop_first, both, triggered = (np.empty(stop_bar.shape, dtype=bool) for _ in range(3))
    pair_code = np.empty(stop_bar.shape, dtype=np.int8)
    pair_price, pair_pnl = (np.empty(stop_bar.shape, dtype=np.int64) for _ in range(2))
    for k in range(n_targets):
        np.minimum(target_bar[k], stop_bar, out=first)
        np.less(stop_bar, target_bar[k], out=stop_first)
        _choose(stop_first, stop_code, target_code[k], out=pair_code)
        _choose(stop_first, stop_price, target_price[k], out=pair_price)
        _choose(stop_first, stop_pnl, target_pnl[k], out=pair_pnl)
        if np.equal(stop_bar, target_bar[k], out=both).any():  # one bar reaches both levels: bar_exits decides
            m, i = np.nonzero(both)
            at = first[m, i]
            code, price = bar_exits(bars.open[at], bars.high[at], bars.low[at], targets[k, i], stops[m, i])
            price = _booked(code, price, sell_slip)
            pair_code[m, i], pair_price[m, i] = code, price
            pair_pnl[m, i] = (price - entry[i]) * shares[i] - commission[i]
        for j in range(n_liquidations):
            np.less(first, active_end[j], out=triggered)
            _choose(triggered, pair_code, eod_code, out=codes[k, :, j])
            _choose(triggered, first, eod_index[j], out=exit_index[k, :, j])
            _choose(triggered, pair_price, eod_price[j], out=exit_price[k, :, j])
            _choose(triggered, pair_pnl, eod_pnl[j], out=pnl[k, :, j])

    combination = np.indices(grid.shape).reshape(3, -1)
    return SweepResults(
        grid=grid,
        target_index=combination[0],
        stop_index=combination[1],
        liquidation_index=combination[2],
        filled=filled,
        entry_index=np.where(filled, starts, -1),
        entry_price=entry,
        commission=commission,
        target_levels=np.where(filled, targets, 0),
        stop_levels=np.where(filled, stops, 0),
        exit_code=codes.reshape(grid.n_combinations, n_sessions),
        exit_index=exit_index.reshape(grid.n_combinations, n_sessions),
        exit_price=exit_price.reshape(grid.n_combinations, n_sessions),
        pnl=pnl.reshape(grid.n_combinations, n_sessions),
    )
