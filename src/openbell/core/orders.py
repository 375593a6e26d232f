"""The orders the system sends: market-on-open entries, protective exits and liquidations."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from openbell.core.exits import ExitPolicy
from openbell.core.prices import exit_levels
from openbell.core.types import OrderIntent, OrderType, Purpose, Side, Symbol, TimeInForce, client_order_id, our_prefix


def moo_entry(trade_date: date, symbol: Symbol, shares: int) -> OrderIntent:
    """Buy `shares` at the opening auction."""
    return OrderIntent(
        client_order_id(trade_date, symbol, Purpose.ENTRY),
        symbol,
        Side.BUY,
        shares,
        OrderType.MARKET,
        Purpose.ENTRY,
        TimeInForce.OPG,
    )


def protective_exit(
    trade_date: date, symbol: Symbol, shares: int, entry_price: Decimal, policy: ExitPolicy
) -> tuple[OrderIntent, OrderIntent]:
    """A one-cancels-other pair for a filled long entry: a target limit and a stop, from the fill price."""
    target, stop = exit_levels(entry_price, policy.target_pct, policy.stop_pct)
    group = f"{our_prefix(trade_date)}{symbol}-exit"
    return (
        OrderIntent(
            client_order_id(trade_date, symbol, Purpose.TARGET),
            symbol,
            Side.SELL,
            shares,
            OrderType.LIMIT,
            Purpose.TARGET,
            limit_price=target,
            oco_group=group,
        ),
        OrderIntent(
            client_order_id(trade_date, symbol, Purpose.STOP),
            symbol,
            Side.SELL,
            shares,
            OrderType.STOP,
            Purpose.STOP,
            stop_price=stop,
            oco_group=group,
        ),
    )


def liquidation(trade_date: date, symbol: Symbol, shares: int) -> OrderIntent:
    """Sell `shares` at market to flatten what the system opened."""
    return OrderIntent(
        client_order_id(trade_date, symbol, Purpose.EOD), symbol, Side.SELL, shares, OrderType.MARKET, Purpose.EOD
    )
