"""The system's own record of its orders and fills, kept in step with the broker.

The broker is the source of truth for what happened; `orders` and `fills` in DuckDB are what
the system knows it sent and got. Only ids the system made for the day (prefix ob-YYYYMMDD-)
are recorded or acted on, so holdings and orders the system did not create are never touched.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import pandas as pd

from openbell import calendar
from openbell.core.learning import State
from openbell.core.prices import price_to_units, units_to_price
from openbell.core.risk import Action, Halt, RiskEvent, Rule
from openbell.core.types import ClientOrderId, Fill, Order, OrderIntent, Side, Symbol, is_ours
from openbell.store.db import Store
from openbell.venues.broker import Broker


def record_orders(store: Store, trade_date: date, orders: list[Order], run_id: str | None = None) -> None:
    """Record the orders as the broker last reported them (a known order id replaces its row)."""
    if not orders:
        return
    now = datetime.now(calendar.NEW_YORK)
    store.upsert("orders", [_order_row(o, trade_date, now, run_id) for o in orders])


def record_rejection(store: Store, trade_date: date, intent: OrderIntent, reason: str, run_id: str | None) -> None:
    """Record an order the broker refused, with its reason, as a rejected order."""
    row = _intent_row(intent, trade_date) | {
        "status": "rejected", "updated_at": datetime.now(calendar.NEW_YORK), "filled_qty": 0, "reason": reason,
        "run_id": run_id,
    }  # fmt: skip
    store.upsert("orders", [row])


def record_risk_events(store: Store, events: list[RiskEvent], run_id: str | None = None) -> None:
    """Record guards' verdicts in `risk_events` (the same verdict again replaces its row)."""
    if not events:
        return
    store.upsert("risk_events", [
        {"event_id": e.event_id, "trade_date": e.trade_date, "ts": e.ts, "rule": e.rule.value, "symbol": e.symbol,
         "observed": e.observed, "limit_value": e.limit_value, "action": e.action.value, "message": e.message,
         "run_id": run_id}
        for e in events
    ])  # fmt: skip


def risk_halt(store: Store, trade_date: date) -> Halt | None:
    """What stops new entries on `trade_date`: the day's loss limit tripped that day, or a drawdown halt not yet reset."""
    rows = store.query(  # one read: the day's halt first, else the latest drawdown halt since the last reset
        "SELECT action, rule, message FROM risk_events WHERE (trade_date = ? AND action = ?) "
        "OR (action = ? AND trade_date <= ? AND ts > coalesce("
        "(SELECT max(ts) FROM risk_events WHERE action = ?), TIMESTAMPTZ '1970-01-01')) "
        "ORDER BY action = ? DESC, CASE WHEN action = ? THEN epoch(ts) ELSE -epoch(ts) END LIMIT 1",
        [trade_date, Action.HALTED.value, Action.ENTRIES_HALTED.value, trade_date, Action.RESET.value,
         Action.HALTED.value, Action.HALTED.value],
    )  # fmt: skip
    if not rows:
        return None
    action, rule, message = rows[0]
    if action == Action.HALTED.value:
        return Halt(Rule(rule), message)
    return Halt(Rule.MAX_DRAWDOWN_PCT, message + "; `openbell risk reset` resumes")


def session_pnls(store: Store, before: date, sessions: int) -> list[Decimal]:
    """Net P&L of the last `sessions` traded sessions before `before` (since the last risk reset), oldest first."""
    rows = store.query(
        "SELECT net_pnl FROM daily_pnl WHERE trade_date < ? AND trade_date > coalesce("
        "(SELECT max(trade_date) FROM risk_events WHERE action = ?), DATE '1900-01-01') "
        "ORDER BY trade_date DESC LIMIT ?",
        [before, Action.RESET.value, sessions],
    )
    return [Decimal(r[0] or 0) for r in reversed(rows)]


def exit_inputs(store: Store, day: date) -> dict[str, tuple[Decimal | None, float | None]]:
    """Each of the day's picks: the scan's ATR(14) in dollars and the ranker's confidence (None when unknown)."""
    rows = store.query(
        "SELECT r.symbol, c.atr14, r.confidence FROM rankings r LEFT JOIN candidates c USING (trade_date, symbol) "
        "WHERE r.trade_date = ? AND r.selected",
        [day],
    )
    return {  # the ATR to $0.0001, as the backtest takes it
        symbol: (units_to_price(price_to_units(Decimal(repr(atr)))) if atr is not None and atr > 0 else None, confidence)
        for symbol, atr, confidence in rows
    }


def ranker_history(store: Store, before: date, sessions: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The last `sessions` ranked sessions before `before`: each trade with the ranker that picked it
    (ranker, pnl, return_pct), and every ranker's daily rank correlation (ranker, spearman)."""
    window = "SELECT trade_date FROM ranking_decisions WHERE trade_date < ? ORDER BY trade_date DESC LIMIT ?"
    trades = store.query_df(
        f"SELECT d.ranker, t.pnl::DOUBLE AS pnl, t.return_pct FROM trades t JOIN ranking_decisions d USING (trade_date) "
        f"WHERE t.trade_date IN ({window})",
        [before, sessions],
    )
    quality = store.query_df(
        f"SELECT ranker, spearman FROM ranking_quality WHERE horizon = 'open_close' AND trade_date IN ({window})",
        [before, sessions],
    )
    return trades, quality


def ranker_states(store: Store, before: date) -> dict[str, State]:
    """Each ranker's latest state before `before` (a ranker never judged is not listed)."""
    rows = store.query(
        "SELECT ranker, arg_max(state, trade_date) FROM ranker_states WHERE trade_date < ? GROUP BY ranker", [before]
    )
    return {ranker: State(state) for ranker, state in rows}


def ranker_state_on(store: Store, day: date, ranker: str) -> State | None:
    """The learning loop's state for `ranker` on `day`; None when it was not judged that day."""
    rows = store.query("SELECT state FROM ranker_states WHERE trade_date = ? AND ranker = ?", [day, ranker])
    return State(rows[0][0]) if rows else None


class BrokerMirror:
    """Keeps `orders` and `fills` in step with the broker, writing only what changed since last time."""

    def __init__(self, store: Store, broker: Broker, trade_date: date) -> None:
        self._store, self._broker, self._date = store, broker, trade_date
        self._written: dict[ClientOrderId, Order] = {}
        self._fill_ids: set[str] = set()

    def sync(self, fills: list[Fill] | None = None, orders: list[Order] | None = None) -> list[Fill]:
        """Record the day's changed orders and new fills; returns all of the system's fills.

        Two broker reads whatever the number of orders: the day's orders and the fills.

        Args:
            fills: the broker's `fills_since(None)` when the caller has just read them, so that one
                monitor tick asks the broker for its fills once; read here when None.
            orders: the broker's `day_orders()`, likewise.
        """
        if orders is None:
            orders = self._broker.day_orders()
        ours = [o for o in orders if is_ours(o.client_order_id, self._date)]
        changed = [o for o in ours if self._written.get(o.client_order_id) != o]
        record_orders(self._store, self._date, changed)
        self._written.update({o.client_order_id: o for o in changed})
        if fills is None:
            fills = self._broker.fills_since(None)
        fills = [f for f in fills if is_ours(f.client_order_id, self._date)]
        new = [f for f in fills if f.fill_id not in self._fill_ids]
        if new:
            self._store.upsert("fills", [
                {"fill_id": f.fill_id, "client_order_id": f.client_order_id, "trade_date": self._date,
                 "symbol": f.symbol, "side": f.side.value, "qty": f.qty, "price": f.price,
                 "commission": f.commission, "ts": f.ts}
                for f in new
            ])  # fmt: skip
            self._fill_ids.update(f.fill_id for f in new)
        return fills


def sync_from_broker(store: Store, broker: Broker, trade_date: date) -> list[Fill]:
    """Bring the day's recorded orders and fills up to what the broker reports; returns our fills."""
    return BrokerMirror(store, broker, trade_date).sync()


def opened_quantities(fills: list[Fill]) -> dict[Symbol, int]:
    """Shares the system holds from its own fills, per symbol (non-zero only)."""
    held: dict[Symbol, int] = {}
    for f in fills:
        held[f.symbol] = held.get(f.symbol, 0) + (f.qty if f.side is Side.BUY else -f.qty)
    return {s: q for s, q in held.items() if q}


def _intent_row(i: OrderIntent, trade_date: date) -> dict:
    return {
        "client_order_id": i.client_order_id, "trade_date": trade_date, "symbol": i.symbol, "side": i.side.value,
        "order_type": i.order_type.value, "tif": i.tif.value, "purpose": i.purpose.value, "qty": i.qty,
        "limit_price": i.limit_price, "stop_price": i.stop_price, "oco_group": i.oco_group,
    }  # fmt: skip


def _order_row(order: Order, trade_date: date, now: datetime, run_id: str | None) -> dict:
    row = _intent_row(order.intent, trade_date) | {
        "status": order.status.value,
        "broker_order_id": order.broker_order_id,
        "submitted_at": order.submitted_at,
        "updated_at": now,
        "filled_qty": order.filled_qty,
        "avg_fill_price": order.avg_fill_price,
        "reason": order.reason,
    }  # fmt: skip
    if run_id is not None:
        row["run_id"] = run_id
    return row
