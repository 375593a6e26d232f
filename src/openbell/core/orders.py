"""The orders the system sends: market-on-open entries, protective exits and liquidations."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import Decimal

from openbell.core.exits import ExitCode, ExitPolicy, exit_levels_for
from openbell.core.protection import EXIT_PURPOSE
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
    trade_date: date,
    symbol: Symbol,
    shares: int,
    entry_price: Decimal,
    policy: ExitPolicy,
    atr: Decimal | None = None,
    confidence: float | None = None,
) -> tuple[OrderIntent, OrderIntent]:
    """A one-cancels-other pair for a filled long entry: a target limit and a stop, from the fill price.

    The levels are `core.exits.exit_levels_for` (percentages, ATR multiples with the scan's `atr`, or
    the confidence table with the ranker's `confidence`). With a trailing stop in the policy the stop
    is a trailing stop whose `stop_price` is its starting level (the fixed stop, or the trail from the
    fill when that is higher); break-even moves and time exits are the monitor's (`core.exits.step`).
    """
    levels = exit_levels_for(policy, entry_price, atr, confidence)
    target, stop = levels.target, levels.stop
    trailing = levels.trail_pct is not None or levels.trail_amount is not None
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
            OrderType.TRAILING_STOP if trailing else OrderType.STOP,
            Purpose.STOP,
            stop_price=stop,
            oco_group=group,
            trail_percent=levels.trail_pct,
            trail_amount=levels.trail_amount,
        ),
    )


def breakeven_exit(
    trade_date: date, pair: tuple[OrderIntent, OrderIntent], stop: Decimal
) -> tuple[OrderIntent, OrderIntent]:
    """The pair that replaces a protective `pair` once the break-even raised its stop to `stop` (`exits.breakeven_stop`).

    The same shares, target and stop type (a trailing stop keeps trailing, from `stop` up), under ids and a
    group of their own: a monitor run again finds the replacement instead of sending it twice.
    """
    target, old = pair
    symbol = target.symbol
    group = f"{our_prefix(trade_date)}{symbol}-beexit"
    target_id, stop_id = (client_order_id(trade_date, symbol, p) for p in (Purpose.BE_TARGET, Purpose.BE_STOP))
    return (
        replace(target, client_order_id=target_id, purpose=Purpose.BE_TARGET, oco_group=group),
        replace(old, client_order_id=stop_id, purpose=Purpose.BE_STOP, stop_price=stop, oco_group=group),
    )


def liquidation(trade_date: date, symbol: Symbol, shares: int, purpose: Purpose = Purpose.EOD) -> OrderIntent:
    """Sell `shares` at market to flatten what the system opened: at the liquidation time (EOD), when the
    day's loss limit trips (KILL), or when the user flattens (FLATTEN)."""
    return OrderIntent(client_order_id(trade_date, symbol, purpose), symbol, Side.SELL, shares, OrderType.MARKET, purpose)


def monitor_exit(trade_date: date, symbol: Symbol, shares: int, crossed: ExitCode) -> OrderIntent:
    """Sell `shares` at market because the monitor saw its own stop or target crossed (`crossed`).

    One id per symbol and reason, so a monitor run again never sends it twice; the report books it as
    a stop or a target.
    """
    purpose = EXIT_PURPOSE[crossed]
    return OrderIntent(client_order_id(trade_date, symbol, purpose), symbol, Side.SELL, shares, OrderType.MARKET, purpose)
