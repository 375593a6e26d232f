"""The paper broker fill model, written straight from the spec: slow, scalar, Decimal only.

An independent oracle for the replay engine (`openbell.core.backtest`). It imports nothing
from openbell on purpose, so a mistake shared by the engine's helpers cannot hide here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Literal, NamedTuple

OPENING_MINUTE = 9 * 60 + 30
DEFAULT_LIQUIDATION_MINUTE = 15 * 60 + 45

_ONE_DOLLAR = Decimal(1)
_CENT = Decimal("0.01")
_SUBPENNY = Decimal("0.0001")


class MinuteBar(NamedTuple):
    """One minute bar: `minute` is minutes since midnight New York of the bar's start."""

    minute: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal


@dataclass(frozen=True, slots=True)
class ReferenceTrade:
    entry_price: Decimal
    exit_price: Decimal
    exit_reason: Literal["target", "stop", "eod"]
    exit_minute: int | None  # None when the liquidation filled at the session's last close
    commission: Decimal  # entry order plus exit order
    pnl: Decimal


def tick_for(price: Decimal) -> Decimal:
    return _CENT if price >= _ONE_DOLLAR else _SUBPENNY


def round_half_up_to_tick(price: Decimal) -> Decimal:
    """The tick is chosen from the unrounded price; halves round up."""
    return price.quantize(tick_for(price), rounding=ROUND_HALF_UP)


def buy_at_market(price: Decimal, slippage_bps: Decimal) -> Decimal:
    return round_half_up_to_tick(price * (1 + slippage_bps / 10_000))


def sell_at_market(price: Decimal, slippage_bps: Decimal) -> Decimal:
    return round_half_up_to_tick(price * (1 - slippage_bps / 10_000))


def order_commission(shares: int, per_share: Decimal = Decimal("0.005"), minimum: Decimal = Decimal("1.00")) -> Decimal:
    return max(minimum, per_share * shares)


def simulate_session(
    bars: Sequence[MinuteBar | tuple],
    shares: int,
    liquidation_minute: int = DEFAULT_LIQUIDATION_MINUTE,
    target_pct: Decimal = Decimal("2.6"),
    stop_pct: Decimal = Decimal("0.9"),
    slippage_bps: Decimal = Decimal(0),
) -> ReferenceTrade | None:
    """Buy `shares` at the opening print of one session and exit by the fill model.

    `bars` are the session's bars in time order. Returns None when the entry does not fill.
    """
    bars = [MinuteBar(*bar) for bar in bars]
    opening_bars = [i for i, bar in enumerate(bars) if bar.minute == OPENING_MINUTE]
    if not opening_bars:
        return None
    entry_index = opening_bars[0]
    entry = buy_at_market(bars[entry_index].open, slippage_bps)
    target = round_half_up_to_tick(entry * (1 + target_pct / 100))
    stop = round_half_up_to_tick(entry * (1 - stop_pct / 100))
    commission = 2 * order_commission(shares)

    def closed(exit_price: Decimal, reason: str, minute: int | None) -> ReferenceTrade:
        pnl = (exit_price - entry) * shares - commission
        return ReferenceTrade(entry, exit_price, reason, minute, commission, pnl)

    for bar in bars[entry_index:]:
        if bar.minute >= liquidation_minute:
            break
        if bar.open >= target:
            return closed(round_half_up_to_tick(bar.open), "target", bar.minute)
        if bar.open <= stop:
            return closed(sell_at_market(bar.open, slippage_bps), "stop", bar.minute)
        if bar.low <= stop:
            return closed(sell_at_market(stop, slippage_bps), "stop", bar.minute)
        if bar.high >= target:
            return closed(target, "target", bar.minute)

    for bar in bars[entry_index:]:
        if bar.minute >= liquidation_minute:
            return closed(sell_at_market(bar.open, slippage_bps), "eod", bar.minute)
    return closed(sell_at_market(bars[-1].close, slippage_bps), "eod", None)
