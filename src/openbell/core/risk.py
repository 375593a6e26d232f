"""Risk guardrails: the limits on a day's entries and losses, and the verdicts they give.

One set of rules for the order task, the monitor, the paper broker and the backtest:
- `admit_entries` walks the day's sized picks in rank order and refuses those that would break a
  limit on positions, exposure, notional per symbol or trades per day (or any entry once the day's
  loss limit tripped or a drawdown halt is on);
- `day_pnl_breach` says whether realised plus marked-to-market P&L is past the day's loss limit (the
  kill switch) or its profit target (the day is done: lock the gain in), and `day_limit_exits` replays
  either over a backtest day's bars;
- `drawdown_breach` says whether equity fell more than the limit from its peak over recent sessions.
Every refusal and trip is a `RiskEvent`, recorded in `risk_events` and shown in the report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum

import numpy as np

from openbell.core.backtest import DAY_TARGET, EOD, KILL_SWITCH, OPEN_MINUTE, FillCosts, SessionBars, SessionResults
from openbell.core.prices import scaled_to_tick
from openbell.core.sizing import PositionSize
from openbell.core.types import Fill, Side, Symbol


class Rule(StrEnum):
    """What a risk event is about; the `rule` column of `risk_events`."""

    DAILY_LOSS_USD = "daily_loss_usd"
    DAILY_LOSS_PCT = "daily_loss_pct"
    DAILY_PROFIT_USD = "daily_profit_usd"  # the day's profit target: flatten and stop, as the kill switch does
    DAILY_PROFIT_PCT = "daily_profit_pct"
    MAX_POSITIONS = "max_positions"
    MAX_EXPOSURE_USD = "max_exposure_usd"
    MAX_EXPOSURE_PCT = "max_exposure_pct"
    MAX_SYMBOL_NOTIONAL_USD = "max_symbol_notional_usd"
    MAX_TRADES_PER_DAY = "max_trades_per_day"
    MAX_DRAWDOWN_PCT = "max_drawdown_pct"
    BUYING_POWER = "buying_power"
    PROTECTION = "protection"  # a protective order the broker refused or failed: the monitor holds the stop
    BROKER_OUTAGE = "broker_outage"
    FLATTEN = "flatten"  # flattened by hand (openbell flatten)


class Action(StrEnum):
    REFUSED = "refused"  # an order was not sent
    HALTED = "halted"  # the day's trading stopped: entries cancelled, positions flattened, no new orders
    ENTRIES_HALTED = "entries_halted"  # no new entries until `openbell risk reset`
    RESET = "reset"
    FALLBACK = "fallback"  # the monitor holds the exit itself
    RECOVERED = "recovered"
    FLATTENED = "flattened"


_REPEATABLE = frozenset({Rule.BROKER_OUTAGE, Rule.PROTECTION})
PROFIT_RULES = frozenset({Rule.DAILY_PROFIT_USD, Rule.DAILY_PROFIT_PCT})  # a halt that locks a gain in, not a loss


@dataclass(frozen=True, slots=True)
class RiskEvent:
    """One guard's verdict, as recorded in `risk_events`."""

    trade_date: date
    ts: datetime
    rule: Rule
    action: Action
    message: str
    symbol: str | None = None
    observed: float | None = None
    limit_value: float | None = None

    @property
    def event_id(self) -> str:
        """The same verdict on the same day and symbol is one row, however often a rerun reaches it.

        Outages and protection fallbacks can happen more than once a day: their minute is part of the id.
        """
        base = f"{self.trade_date:%Y%m%d}-{self.rule.value}-{self.action.value}-{self.symbol or '*'}"
        return f"{base}-{self.ts:%H%M}" if self.rule in _REPEATABLE else base


@dataclass(frozen=True, slots=True)
class RiskLimits:
    """The day's limits; None switches a limit off (all are off by default)."""

    daily_loss_usd: Decimal | None = None
    daily_loss_pct: Decimal | None = None  # of the day's starting equity
    daily_profit_usd: Decimal | None = None  # the day's profit target: flatten and stop once reached
    daily_profit_pct: Decimal | None = None  # of the day's starting equity
    max_positions: int | None = None
    max_exposure_usd: Decimal | None = None  # gross, the day's entries at their sized notional
    max_exposure_pct: Decimal | None = None  # of equity
    max_symbol_notional_usd: Decimal | None = None
    max_trades_per_day: int | None = None
    max_drawdown_pct: Decimal | None = None  # from the equity peak of the last `drawdown_sessions` sessions
    drawdown_sessions: int = 20

    def __post_init__(self) -> None:
        for name in ("daily_loss_usd", "daily_profit_usd", "max_exposure_usd", "max_symbol_notional_usd"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive dollars, got {value}")
        for name in ("daily_loss_pct", "daily_profit_pct", "max_exposure_pct", "max_drawdown_pct"):
            value = getattr(self, name)
            if value is not None and not Decimal(0) < value <= Decimal(100):
                raise ValueError(f"{name} must be a percentage in (0, 100], got {value}")
        for name in ("max_positions", "max_trades_per_day"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if self.drawdown_sessions < 1:
            raise ValueError(f"drawdown_sessions must be at least 1, got {self.drawdown_sessions}")

    def daily_loss_limit(self, starting_equity: Decimal) -> Decimal | None:
        """The day's loss limit in dollars (a positive number): the tighter of the two, or None."""
        return _tighter(self.daily_loss_usd, self.daily_loss_pct, starting_equity)

    def daily_profit_target(self, starting_equity: Decimal) -> Decimal | None:
        """The day's profit target in dollars: the nearer of the two, or None."""
        return _tighter(self.daily_profit_usd, self.daily_profit_pct, starting_equity)

    @property
    def watches_day_pnl(self) -> bool:
        """True when the monitor must mark the day's P&L each minute (a loss limit or a profit target is set)."""
        return any(v is not None for v in (self.daily_loss_usd, self.daily_loss_pct, self.daily_profit_usd,
                                           self.daily_profit_pct))  # fmt: skip


def _tighter(usd: Decimal | None, pct: Decimal | None, starting_equity: Decimal) -> Decimal | None:
    limits = [usd] if usd is not None else []
    if pct is not None:
        limits.append(starting_equity * pct / 100)
    return min(limits) if limits else None


@dataclass(frozen=True, slots=True)
class Halt:
    """Why no entry may be sent: the rule that tripped (the day's loss, a drawdown) and what it said."""

    rule: Rule
    reason: str


@dataclass(frozen=True, slots=True)
class Book:
    """What the day already holds when new entries are considered."""

    equity: Decimal
    open_positions: int = 0
    exposure: Decimal = Decimal(0)  # gross notional of open positions and working entries
    notional_by_symbol: dict[str, Decimal] | None = None
    trades_today: int = 0  # entries sent today


def admit_entries(
    sizes: Sequence[PositionSize],
    limits: RiskLimits,
    book: Book,
    *,
    trade_date: date,
    now: datetime,
    halted: Halt | None = None,
) -> tuple[list[PositionSize], list[RiskEvent]]:
    """The sizes in rank order, each kept while every limit holds; the others skipped, with their events.

    `halted` refuses every entry: the day's loss limit tripped, or a drawdown halt is on.
    A refused pick keeps its place with 0 shares and the reason, like a pick sizing skipped; a later,
    smaller pick can still fit.
    """
    positions, exposure, trades = book.open_positions, book.exposure, book.trades_today
    by_symbol = dict(book.notional_by_symbol or {})
    kept: list[PositionSize] = []
    events: list[RiskEvent] = []
    for size in sizes:
        if not size.shares:
            kept.append(size)
            continue
        refusal = _refusal(size, limits, book.equity, positions, exposure, by_symbol, trades, halted)
        if refusal is not None:
            rule, observed, limit, reason = refusal
            kept.append(replace(size, shares=0, notional=Decimal(0), skipped_reason=reason))
            events.append(RiskEvent(trade_date, now, rule, Action.REFUSED, f"{size.symbol}: {reason}", size.symbol,
                                    observed, limit))  # fmt: skip
            continue
        positions, exposure, trades = positions + 1, exposure + size.notional, trades + 1
        by_symbol[size.symbol] = by_symbol.get(size.symbol, Decimal(0)) + size.notional
        kept.append(size)
    return kept, events


def _refusal(
    size: PositionSize,
    limits: RiskLimits,
    equity: Decimal,
    positions: int,
    exposure: Decimal,
    by_symbol: dict[str, Decimal],
    trades: int,
    halted: Halt | None,
) -> tuple[Rule, float | None, float | None, str] | None:
    """The first limit this entry would break, as (rule, observed, limit, reason); None when it fits."""
    if halted is not None:
        return halted.rule, None, None, f"no new entries: {halted.reason}"
    if limits.max_positions is not None and positions + 1 > limits.max_positions:
        return (
            Rule.MAX_POSITIONS,
            positions + 1,
            limits.max_positions,
            f"would be position {positions + 1} of at most {limits.max_positions}",
        )
    if limits.max_trades_per_day is not None and trades + 1 > limits.max_trades_per_day:
        return (Rule.MAX_TRADES_PER_DAY, trades + 1, limits.max_trades_per_day,
                f"would be trade {trades + 1} of at most {limits.max_trades_per_day} today")  # fmt: skip
    symbol_notional = by_symbol.get(size.symbol, Decimal(0)) + size.notional
    if limits.max_symbol_notional_usd is not None and symbol_notional > limits.max_symbol_notional_usd:
        limit = limits.max_symbol_notional_usd
        reason = f"${symbol_notional:,.2f} in {size.symbol} is over the ${limit:,.2f} limit"
        return Rule.MAX_SYMBOL_NOTIONAL_USD, float(symbol_notional), float(limit), reason
    gross = exposure + size.notional
    if limits.max_exposure_usd is not None and gross > limits.max_exposure_usd:
        return (Rule.MAX_EXPOSURE_USD, float(gross), float(limits.max_exposure_usd),
                f"gross exposure ${gross:,.2f} would be over the ${limits.max_exposure_usd:,.2f} limit")  # fmt: skip
    if limits.max_exposure_pct is not None and equity > 0:
        pct = gross / equity * 100
        if pct > limits.max_exposure_pct:
            return (Rule.MAX_EXPOSURE_PCT, float(pct), float(limits.max_exposure_pct),
                    f"gross exposure {pct:.1f}% of equity would be over the {limits.max_exposure_pct}% limit")  # fmt: skip
    return None


def day_pnl_breach(pnl: Decimal, starting_equity: Decimal, limits: RiskLimits) -> tuple[Rule, float, float, str] | None:
    """Whether the day's P&L (realised plus marked to market) reached its loss limit or its profit target.

    Returns (rule, observed, limit, message) when it did (the loss first), None otherwise; the
    observed value is the loss (or the gain) in dollars or in percent of the starting equity.
    """
    for sign, usd_rule, pct_rule, usd, pct, what in (
        (-1, Rule.DAILY_LOSS_USD, Rule.DAILY_LOSS_PCT, limits.daily_loss_usd, limits.daily_loss_pct, "loss"),
        (1, Rule.DAILY_PROFIT_USD, Rule.DAILY_PROFIT_PCT, limits.daily_profit_usd, limits.daily_profit_pct, "profit"),
    ):
        amount = sign * pnl
        if usd is not None and amount >= usd:
            return usd_rule, float(amount), float(usd), f"the day's {what} ${amount:,.2f} reached the ${usd:,.2f} limit"
        if pct is not None and starting_equity > 0 and (share := amount / starting_equity * 100) >= pct:
            message = f"the day's {what} {share:.2f}% of ${starting_equity:,.2f} reached the {pct}% limit"
            return pct_rule, float(share), float(pct), message
    return None


def drawdown_breach(equity_by_session: Sequence[Decimal], limits: RiskLimits) -> tuple[float, str] | None:
    """Whether the latest equity is more than the limit below its peak over the last `drawdown_sessions`.

    `equity_by_session` is each session's closing equity, oldest first, the latest last. Returns
    (drawdown %, message) when entries must halt, None otherwise.
    """
    if limits.max_drawdown_pct is None or not equity_by_session:
        return None
    window = list(equity_by_session)[-(limits.drawdown_sessions + 1) :]
    peak, last = max(window), window[-1]
    if peak <= 0:
        return None
    drawdown = (peak - last) / peak * 100
    if drawdown > limits.max_drawdown_pct:
        return float(drawdown), (
            f"equity ${last:,.2f} is {drawdown:.2f}% below its peak ${peak:,.2f} of the last "
            f"{limits.drawdown_sessions} sessions (limit {limits.max_drawdown_pct}%)"
        )
    return None


def closing_equities(latest: Decimal, net_pnl_by_session: Sequence[Decimal]) -> list[Decimal]:
    """Each session's closing equity, oldest first, from the latest equity and the sessions' net P&L (oldest first).

    The latest equity is the close of the last of those sessions; each earlier close is it less the
    P&L of the sessions after.
    """
    equities = [latest]
    for pnl in reversed(net_pnl_by_session[1:]):
        equities.append(equities[-1] - pnl)
    return equities[::-1]


@dataclass(frozen=True, slots=True)
class DayTrip:
    """Where a day's loss limit or profit target tripped in a replay: after the bar of `minute` completed,
    with the day's P&L at `pnl` $0.0001 units; `code` is the exit code of what it flattened."""

    minute: int  # minutes since midnight New York of the bar whose close tripped it
    pnl: int
    code: int  # KILL_SWITCH (the loss limit) or DAY_TARGET (the profit target)


def day_limit_exits(
    bars: SessionBars,
    results: SessionResults,
    shares: np.ndarray,
    liquidation_minute: int,
    costs: FillCosts,
    *,
    loss_units: int | None = None,
    target_units: int | None = None,
) -> tuple[SessionResults, DayTrip | None]:
    """The day's positions as the monitor's daily loss limit and profit target would have left them.

    The monitor checks once a minute, after each bar completes, up to the liquidation time (its last
    check sees the bar two minutes before it): the day's P&L is every exit's realised P&L (both
    commissions) plus each open position marked at its last completed close, less its entry
    commission. At the first check where the loss reaches `loss_units` or the gain reaches
    `target_units` (the loss first when both do), every position still open
    is sold at market: at the open of its next bar (with the sell slippage), or at its last close
    when it has none. `bars` and `results` are one day's sessions from `replay_sessions`.
    """
    filled = results.filled
    if (loss_units is None and target_units is None) or not filled.any():
        return results, None
    starts, ends = bars.starts, bars.ends
    checks = np.arange(OPEN_MINUTE, liquidation_minute - 1)  # bar minutes whose close a check sees
    if not len(checks):
        return results, None
    n = len(starts)
    # Each position's last completed bar at each check (bars are in time order within a session).
    minute = bars.minute
    last_bar = np.empty((n, len(checks)), dtype=np.int64)
    for i in range(n):  # a day holds a handful of positions; each row is one searchsorted
        seg = minute[starts[i] : ends[i]]
        last_bar[i] = starts[i] + np.searchsorted(seg, checks, side="right") - 1
    mark = np.where(last_bar >= starts[:, None], bars.close[np.maximum(last_bar, 0)], results.entry_price[:, None])
    entry_commission = costs.commission_units(shares)
    open_pnl = (mark - results.entry_price[:, None]) * shares[:, None] - entry_commission[:, None]
    exit_minute = np.where(results.exit_index >= 0, bars.minute[np.maximum(results.exit_index, 0)], np.iinfo(np.int32).max)
    exit_minute = np.where(results.exit_code == EOD, np.iinfo(np.int32).max, exit_minute)
    closed = exit_minute[:, None] <= checks[None, :]
    pnl = np.where(closed, results.pnl[:, None], open_pnl)
    pnl = np.where(filled[:, None], pnl, 0)
    total = pnl.sum(axis=0)
    never = np.iinfo(np.int64).max
    lost = -total >= (never if loss_units is None else loss_units)
    gained = total >= (never if target_units is None else target_units)
    tripped = np.flatnonzero(lost | gained)
    if not len(tripped):
        return results, None
    t = int(tripped[0])
    code = KILL_SWITCH if lost[t] else DAY_TARGET
    trip_minute = int(checks[t])
    still_open = filled & ~closed[:, t]
    next_bar = np.array(
        [starts[i] + np.searchsorted(minute[starts[i] : ends[i]], trip_minute, side="right") for i in range(n)]
    )
    has_next = next_bar < ends
    price = np.where(has_next, bars.open[np.minimum(next_bar, len(bars.open) - 1)], bars.close[np.maximum(ends - 1, 0)])
    price = scaled_to_tick(price, 1 - costs.slippage_bps / 10_000)
    exit_price = np.where(still_open, price, results.exit_price)
    exit_index = np.where(still_open, np.where(has_next, next_bar, -1), results.exit_index)
    exit_code = np.where(still_open, code, results.exit_code).astype(np.int8)
    pnl_after = np.where(filled, (exit_price - results.entry_price) * shares - results.commission, 0)
    return (
        replace(results, exit_index=exit_index, exit_price=exit_price, exit_code=exit_code, pnl=pnl_after),
        DayTrip(trip_minute, int(total[t]), code),
    )


def marked_pnl(fills: Sequence[Fill], marks: Mapping[Symbol, Decimal]) -> Decimal:
    """The day's P&L from its fills: the cash they moved (commissions included) plus what they left held, at `marks`.

    A symbol still held without a mark is valued at its average buy price (no gain, no loss yet).
    """
    cash = Decimal(0)
    held: dict[Symbol, int] = {}
    cost: dict[Symbol, tuple[int, Decimal]] = {}  # shares bought, what they cost
    for f in fills:
        signed = f.qty if f.side is Side.BUY else -f.qty
        cash -= signed * f.price + f.commission
        held[f.symbol] = held.get(f.symbol, 0) + signed
        if f.side is Side.BUY:
            bought, paid = cost.get(f.symbol, (0, Decimal(0)))
            cost[f.symbol] = (bought + f.qty, paid + f.qty * f.price)
    for symbol, qty in held.items():
        if qty:
            bought, paid = cost.get(symbol, (0, Decimal(0)))
            fallback = paid / bought if bought else Decimal(0)
            cash += qty * marks.get(symbol, fallback)
    return cash
