"""The system's own record of its orders and fills, kept in step with the broker.

The broker is the source of truth for what happened; `orders` and `fills` in DuckDB are what
the system knows it sent and got. Only ids the system made for the day (prefix ob-YYYYMMDD-)
are recorded or acted on, so holdings and orders the system did not create are never touched.
"""

from __future__ import annotations

from datetime import date, datetime

from openbell import calendar
from openbell.brokers import Broker
from openbell.core.risk import RiskEvent
from openbell.core.types import ClientOrderId, Fill, Order, OrderIntent, Side, Symbol, is_ours
from openbell.store import Store


def record_orders(store: Store, trade_date: date, orders: list[Order], run_id: str | None = None) -> None:
    if not orders:
        return
    now = datetime.now(calendar.NEW_YORK)
    store.upsert("orders", [_order_row(o, trade_date, now, run_id) for o in orders])


def record_rejection(store: Store, trade_date: date, intent: OrderIntent, reason: str, run_id: str | None) -> None:
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


class BrokerMirror:
    """Keeps `orders` and `fills` in step with the broker, writing only what changed since last time."""

    def __init__(self, store: Store, broker: Broker, trade_date: date) -> None:
        self._store, self._broker, self._date = store, broker, trade_date
        self._written: dict[ClientOrderId, Order] = {}
        self._fill_ids: set[str] = set()

    def sync(self, fills: list[Fill] | None = None) -> list[Fill]:
        """Record the day's changed orders and new fills; returns all of the system's fills.

        Args:
            fills: the broker's `fills_since(None)` when the caller has just read them, so that one
                monitor tick asks the broker for its fills once; read here when None.
        """
        ids = [
            ClientOrderId(r[0])
            for r in self._store.query(
                "SELECT client_order_id FROM orders WHERE trade_date = ? AND status <> 'rejected'", [self._date]
            )
        ]
        reported = [o for o in (self._broker.order(i) for i in ids) if o is not None]
        changed = [o for o in reported if self._written.get(o.client_order_id) != o]
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
