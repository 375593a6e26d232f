"""P&L: round trips from fills, and the day's summary."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from openbell.core.types import EXIT_REASON_OF_PURPOSE, ClientOrderId, Fill, Purpose, Side, Symbol, Trade


@dataclass(frozen=True, slots=True)
class DailyPnl:
    trade_date: date
    trades: int
    wins: int
    losses: int
    win_rate: float  # wins / trades, 0 when there were no trades
    gross_pnl: Decimal  # before commissions
    commission: Decimal
    net_pnl: Decimal
    unfilled: int  # entries that got no fill (no opening print)
    skipped: int  # picks that sizing skipped


def round_trips(trade_date: date, fills: Iterable[Fill], purposes: Mapping[ClientOrderId, Purpose]) -> list[Trade]:
    """One trade per symbol whose entry was fully closed on `trade_date`.

    Entry and exit prices are volume-weighted over their fills; P&L is computed from the fills
    themselves (sells minus buys minus every commission), so it equals the cash the fills moved.
    A symbol still open (exit shares short of entry shares) yields no trade.
    """
    by_symbol: dict[Symbol, list[Fill]] = defaultdict(list)
    for fill in fills:
        by_symbol[fill.symbol].append(fill)

    trades = []
    for symbol, symbol_fills in sorted(by_symbol.items()):
        buys = [f for f in symbol_fills if f.side is Side.BUY]
        sells = [f for f in symbol_fills if f.side is Side.SELL]
        shares = sum(f.qty for f in buys)
        if not buys or sum(f.qty for f in sells) != shares:
            continue
        last_exit = max(sells, key=lambda f: f.ts)
        cost = sum((f.price * f.qty for f in buys), Decimal(0))
        proceeds = sum((f.price * f.qty for f in sells), Decimal(0))
        commission = sum((f.commission for f in symbol_fills), Decimal(0))
        trades.append(
            Trade(
                trade_date=trade_date,
                symbol=symbol,
                shares=shares,
                entry_ts=min(f.ts for f in buys),
                entry_price=cost / shares,
                exit_ts=last_exit.ts,
                exit_price=proceeds / shares,
                exit_reason=EXIT_REASON_OF_PURPOSE[purposes[last_exit.client_order_id]],
                commission=commission,
                pnl=proceeds - cost - commission,
                exit_order_id=last_exit.client_order_id,
            )
        )
    return trades


def summarize_day(trade_date: date, trades: list[Trade], unfilled: int = 0, skipped: int = 0) -> DailyPnl:
    wins = sum(1 for t in trades if t.pnl > 0)
    commission = sum((t.commission for t in trades), Decimal(0))
    net = sum((t.pnl for t in trades), Decimal(0))
    return DailyPnl(
        trade_date=trade_date,
        trades=len(trades),
        wins=wins,
        losses=sum(1 for t in trades if t.pnl < 0),
        win_rate=wins / len(trades) if trades else 0.0,
        gross_pnl=net + commission,
        commission=commission,
        net_pnl=net,
        unfilled=unfilled,
        skipped=skipped,
    )
