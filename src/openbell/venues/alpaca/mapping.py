"""Translation between openbell's orders and alpaca-py's models: pure functions, no network.

Conventions at Alpaca:
- A market-on-open entry is a market order with time in force `opg`; every other order is `day`.
- The protective pair is ONE Alpaca order of class `oco`: the parent is the sell limit (our target,
  carrying the target's client order id) and its single leg is the sell stop. Alpaca names the leg
  itself (a random client order id), so the leg is mapped back to our stop's id through its parent:
  `ob-YYYYMMDD-SYM-target` -> `ob-YYYYMMDD-SYM-stop`.
- A trailing stop (`OrderType.TRAILING_STOP`) is its own order, `trailing_stop` with `trail_percent` or
  `trail_price` (Alpaca's name for the amount): Alpaca's one-cancels-other orders take a fixed stop leg only,
  and its trailing stop has no starting level (its high water mark starts at the price when placed), so
  the intent's `stop_price` is not sent; the monitor keeps that level.
- Alpaca reports numbers as strings; they become Decimal (prices) and int (shares) here, never float.
- Fills are derived from orders: one fill per order whose fill is final (filled, or done with some
  shares filled), id `<alpaca order id>-<filled qty>`, commission 0 (Alpaca charges none on equities).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from alpaca.trading.enums import OrderClass, PositionSide
from alpaca.trading.enums import OrderSide as AlpacaSide
from alpaca.trading.enums import OrderStatus as AlpacaStatus
from alpaca.trading.enums import OrderType as AlpacaType
from alpaca.trading.enums import TimeInForce as AlpacaTif
from alpaca.trading.models import Order as AlpacaOrder
from alpaca.trading.models import Position as AlpacaPosition
from alpaca.trading.models import TradeAccount
from alpaca.trading.requests import (
    LimitOrderRequest,
    MarketOrderRequest,
    OrderRequest,
    StopLossRequest,
    StopOrderRequest,
    TakeProfitRequest,
    TrailingStopOrderRequest,
)

from openbell.core.types import (
    NEW_YORK,
    STOP_OF_TARGET,
    ClientOrderId,
    Fill,
    Order,
    OrderIntent,
    OrderStatus,
    OrderType,
    Position,
    Purpose,
    Side,
    Symbol,
    TimeInForce,
    is_ours,
)
from openbell.venues.broker import Account, required

# Alpaca's order states, grouped by what they mean for us. Together they cover every AlpacaStatus.
WORKING_STATUSES = frozenset({
    AlpacaStatus.NEW, AlpacaStatus.ACCEPTED, AlpacaStatus.PENDING_NEW, AlpacaStatus.ACCEPTED_FOR_BIDDING,
    AlpacaStatus.PARTIALLY_FILLED, AlpacaStatus.HELD, AlpacaStatus.PENDING_CANCEL, AlpacaStatus.PENDING_REPLACE,
    AlpacaStatus.PENDING_REVIEW, AlpacaStatus.STOPPED, AlpacaStatus.SUSPENDED,
})  # fmt: skip
FILLED_STATUSES = frozenset({AlpacaStatus.FILLED})
CANCELLED_STATUSES = frozenset({AlpacaStatus.CANCELED, AlpacaStatus.REPLACED})
EXPIRED_STATUSES = frozenset({AlpacaStatus.EXPIRED, AlpacaStatus.DONE_FOR_DAY, AlpacaStatus.CALCULATED})
REJECTED_STATUSES = frozenset({AlpacaStatus.REJECTED})

_STATUS_GROUPS = (
    (WORKING_STATUSES, OrderStatus.NEW),
    (FILLED_STATUSES, OrderStatus.FILLED),
    (CANCELLED_STATUSES, OrderStatus.CANCELLED),
    (EXPIRED_STATUSES, OrderStatus.EXPIRED),
    (REJECTED_STATUSES, OrderStatus.REJECTED),
)
_TIF = {TimeInForce.DAY: AlpacaTif.DAY, TimeInForce.OPG: AlpacaTif.OPG}
_SIDE = {Side.BUY: AlpacaSide.BUY, Side.SELL: AlpacaSide.SELL}
_ORDER_TYPE = {
    AlpacaType.MARKET: OrderType.MARKET,
    AlpacaType.LIMIT: OrderType.LIMIT,
    AlpacaType.STOP: OrderType.STOP,
    AlpacaType.TRAILING_STOP: OrderType.TRAILING_STOP,
}
COMMISSION = Decimal(0)  # Alpaca charges no commission on US equities (regulatory fees are not modelled)


@dataclass(frozen=True, slots=True)
class Placed:
    """One of our orders as Alpaca holds it; for the stop leg of a one-cancels-other pair, with its parent."""

    client_order_id: ClientOrderId
    raw: AlpacaOrder
    parent: AlpacaOrder | None = None


# --- ids -------------------------------------------------------------------------------------
def purpose_of(client_order_id: str) -> Purpose:
    """The purpose at the end of one of our ids (`ob-20250307-ABC-target` -> TARGET)."""
    suffix = client_order_id.rsplit("-", 1)[-1]
    try:
        return Purpose(suffix)
    except ValueError:
        raise ValueError(f"{client_order_id!r} is not an openbell client order id (no purpose suffix)") from None


def stop_leg_id(target_id: str) -> ClientOrderId:
    """Our id for the stop leg of the one-cancels-other order that carries `target_id` (a target or break-even target)."""
    return ClientOrderId(_stem(target_id) + STOP_OF_TARGET.get(purpose_of(target_id), Purpose.STOP).value)


def target_id_for(stop_id: str) -> ClientOrderId:
    """The id of the one-cancels-other parent whose leg is our stop `stop_id`."""
    target = next((t for t, s in STOP_OF_TARGET.items() if s is purpose_of(stop_id)), Purpose.TARGET)
    return ClientOrderId(_stem(stop_id) + target.value)


def is_stop_leg(client_order_id: str) -> bool:
    """True for the id of a stop that Alpaca holds as the leg of our one-cancels-other target."""
    return purpose_of(client_order_id) in STOP_OF_TARGET.values()


def oco_group_of(client_order_id: str) -> str:
    """The group core.orders gives a target and its stop: `ob-YYYYMMDD-SYM-exit`, `-beexit` once the break-even raised it."""
    raised = purpose_of(client_order_id) in (Purpose.BE_TARGET, Purpose.BE_STOP)
    return _stem(client_order_id) + ("beexit" if raised else "exit")


def _stem(client_order_id: str) -> str:
    return client_order_id.rsplit("-", 1)[0] + "-"


# --- requests --------------------------------------------------------------------------------
def order_request(intent: OrderIntent) -> OrderRequest:
    """A single order: market (opening auction with OPG, else day), limit, stop or trailing stop."""
    common = dict(
        symbol=intent.symbol,
        qty=intent.qty,
        side=_SIDE[intent.side],
        time_in_force=_TIF[intent.tif],
        client_order_id=intent.client_order_id,
    )
    if intent.order_type is OrderType.MARKET:
        return MarketOrderRequest(**common)
    if intent.tif is TimeInForce.OPG:
        raise ValueError(f"{intent.client_order_id}: only market orders are sent for the opening auction")
    if intent.order_type is OrderType.LIMIT:
        return LimitOrderRequest(**common, limit_price=_price(intent.limit_price))
    if intent.order_type is OrderType.TRAILING_STOP:
        if intent.trail_percent is not None:
            return TrailingStopOrderRequest(**common, trail_percent=_price(intent.trail_percent))
        return TrailingStopOrderRequest(**common, trail_price=_price(intent.trail_amount))
    return StopOrderRequest(**common, stop_price=_price(intent.stop_price))


def oco_request(target: OrderIntent, stop: OrderIntent) -> LimitOrderRequest:
    """One Alpaca `oco` order for a protective pair: the target's id, a take-profit limit and a stop-loss stop.

    Raises ValueError when the two intents are not one exit of one position.
    """
    problems = [
        text
        for wrong, text in (
            (target.order_type is not OrderType.LIMIT or stop.order_type is not OrderType.STOP,
             "the target must be a limit order and the stop a stop order (Alpaca's one-cancels-other orders take "
             "no trailing stop: send a trailing stop alone with order_request)"),
            (target.symbol != stop.symbol or target.qty != stop.qty or target.side != stop.side,
             "target and stop must sell the same symbol and quantity"),
            (not target.oco_group or target.oco_group != stop.oco_group, "target and stop need one shared oco_group"),
            (target.tif is not TimeInForce.DAY or stop.tif is not TimeInForce.DAY,
             "one-cancels-other exits are day orders"),
            (stop.client_order_id != stop_leg_id(target.client_order_id),
             f"the stop's id must be {stop_leg_id(target.client_order_id)} to be found again as the target's leg"),
        )
        if wrong
    ]  # fmt: skip
    if problems:
        raise ValueError(f"{target.client_order_id}: " + "; ".join(problems))
    return LimitOrderRequest(
        symbol=target.symbol,
        qty=target.qty,
        side=_SIDE[target.side],
        time_in_force=AlpacaTif.DAY,
        order_class=OrderClass.OCO,
        take_profit=TakeProfitRequest(limit_price=_price(target.limit_price)),
        stop_loss=StopLossRequest(stop_price=_price(stop.stop_price)),
        client_order_id=target.client_order_id,
    )


def _price(value: Decimal | None) -> float:
    # alpaca-py types prices as float; a tick-rounded Decimal survives the round trip exactly
    # (float repr is the shortest string that reads back the same).
    return float(required(value, "price"))


# --- orders ----------------------------------------------------------------------------------
def placed_orders(raws: Iterable[AlpacaOrder], trade_date: date) -> list[Placed]:
    """Our orders of `trade_date` among Alpaca orders listed with nested legs, legs flattened out."""
    found: list[Placed] = []
    for raw in raws:
        if not is_ours(raw.client_order_id, trade_date):
            continue
        found.append(Placed(ClientOrderId(raw.client_order_id), raw))
        leg = stop_leg_of(raw)
        if leg is not None:
            found.append(Placed(stop_leg_id(raw.client_order_id), leg, raw))
    return found


def stop_leg_of(parent: AlpacaOrder) -> AlpacaOrder | None:
    """The stop leg of our one-cancels-other target order (None for any other order, or legs not loaded)."""
    if parent.order_class != OrderClass.OCO or purpose_of(parent.client_order_id) not in STOP_OF_TARGET:
        return None
    return next((leg for leg in parent.legs or () if leg.type == AlpacaType.STOP), None)


def to_status(raw: AlpacaOrder) -> OrderStatus:
    """Alpaca's status in our terms; a day that ended with every share filled counts as filled.

    A working order with shares filled is partially filled whatever Alpaca's working state says
    (`partially_filled`, or `pending_cancel` after a partial fill): it still works, for the rest.
    """
    status = AlpacaStatus(raw.status)
    for group, ours in _STATUS_GROUPS:
        if status in group:
            if ours is OrderStatus.EXPIRED and _shares(raw.filled_qty) >= _shares(raw.qty):
                return OrderStatus.FILLED
            if ours is OrderStatus.NEW and (status == AlpacaStatus.PARTIALLY_FILLED or _shares(raw.filled_qty)):
                return OrderStatus.PARTIALLY_FILLED
            return ours
    raise ValueError(f"Alpaca order status {status.value!r} is not mapped")  # a new status in a newer API


def to_order(placed: Placed) -> Order:
    """Our view of one of our orders at Alpaca."""
    raw, parent = placed.raw, placed.parent
    client_order_id = placed.client_order_id
    purpose = purpose_of(client_order_id)
    order_type = _ORDER_TYPE.get(AlpacaType(raw.type)) if raw.type else None
    if order_type is None:
        raise ValueError(f"{client_order_id}: Alpaca order type {raw.type!r} is not one openbell sends")
    if raw.symbol is None:
        raise ValueError(f"{client_order_id}: Alpaca's order has no symbol (a multi-leg order openbell does not send)")
    oco = parent is not None or raw.order_class == OrderClass.OCO
    intent = OrderIntent(
        client_order_id=client_order_id,
        symbol=Symbol(raw.symbol),
        side=Side(AlpacaSide(raw.side).value),
        qty=_shares(raw.qty),
        order_type=order_type,
        purpose=purpose,
        tif=TimeInForce.OPG if raw.time_in_force == AlpacaTif.OPG else TimeInForce.DAY,
        limit_price=_dec(raw.limit_price) if order_type is OrderType.LIMIT else None,
        stop_price=_dec(raw.stop_price) if order_type is OrderType.STOP else None,
        oco_group=oco_group_of(client_order_id) if oco else None,
        trail_percent=_dec(raw.trail_percent) if order_type is OrderType.TRAILING_STOP and raw.trail_percent else None,
        trail_amount=_dec(raw.trail_price) if order_type is OrderType.TRAILING_STOP and not raw.trail_percent else None,
    )
    filled_qty = _shares(raw.filled_qty)
    status = to_status(raw)
    return Order(
        intent=intent,
        status=status,
        broker_order_id=str(raw.id),
        submitted_at=_ny(raw.submitted_at),
        filled_qty=filled_qty,
        avg_fill_price=_dec(raw.filled_avg_price) if filled_qty else None,
        reason=_reason(raw, status, placed),
    )


def oco_pair(parent: AlpacaOrder) -> tuple[Order, Order]:
    """(target, stop) of our one-cancels-other order; ValueError when the leg is missing."""
    leg = stop_leg_of(parent)
    if leg is None:
        raise ValueError(f"{parent.client_order_id}: Alpaca returned the one-cancels-other order without its stop leg")
    target_id = ClientOrderId(parent.client_order_id)
    return to_order(Placed(target_id, parent)), to_order(Placed(stop_leg_id(target_id), leg, parent))


def same_order(intent: OrderIntent, order: Order) -> bool:
    """True when `order` at the broker is what `intent` asks for (its id, instrument, size, type and prices)."""
    have = order.intent
    return (
        have.client_order_id == intent.client_order_id
        and have.symbol == intent.symbol
        and have.side == intent.side
        and have.qty == intent.qty
        and have.order_type == intent.order_type
        and have.tif == intent.tif
        and have.limit_price == intent.limit_price
        and (have.stop_price == intent.stop_price or have.order_type is OrderType.TRAILING_STOP)  # not sent
        and have.trail_percent == intent.trail_percent
        and have.trail_amount == intent.trail_amount
    )


def _reason(raw: AlpacaOrder, status: OrderStatus, placed: Placed) -> str | None:
    if status is OrderStatus.CANCELLED:
        winner = _filled_partner(placed)
        if winner is not None:
            return f"one-cancels-other: {winner} filled"
        return "replaced at Alpaca" if raw.status == AlpacaStatus.REPLACED else "cancelled at Alpaca"
    if status is OrderStatus.EXPIRED:
        if raw.time_in_force == AlpacaTif.OPG:
            return "market-on-open order expired unfilled at Alpaca (no opening print)"
        return f"expired at Alpaca ({AlpacaStatus(raw.status).value})"
    if status is OrderStatus.REJECTED:
        return "rejected by Alpaca"
    return None


def _filled_partner(placed: Placed) -> ClientOrderId | None:
    """For a cancelled half of our one-cancels-other pair, the id of the half that filled."""
    if placed.parent is not None:  # the stop leg: its partner is the parent target
        return ClientOrderId(placed.parent.client_order_id) if placed.parent.status == AlpacaStatus.FILLED else None
    leg = stop_leg_of(placed.raw)
    if leg is not None and leg.status == AlpacaStatus.FILLED:
        return stop_leg_id(placed.client_order_id)
    return None


# --- fills, positions, account ---------------------------------------------------------------
def to_fill(placed: Placed) -> Fill | None:
    """The order's execution once it is final: filled, or done (cancelled, expired) with shares filled.

    A working, partially filled order gives no fill yet: its filled quantity still grows, and the
    system adds fills up, so a fill is reported once, when it can no longer change.
    """
    raw = placed.raw
    order = to_order(placed)
    if not order.is_done() or not order.filled_qty:
        return None
    return Fill(
        fill_id=f"{raw.id}-{order.filled_qty}",
        client_order_id=placed.client_order_id,
        symbol=order.intent.symbol,
        side=order.intent.side,
        qty=order.filled_qty,
        price=required(order.avg_fill_price, "avg_fill_price"),
        commission=COMMISSION,
        ts=_ny(raw.filled_at or raw.canceled_at or raw.expired_at or raw.updated_at),
    )


def to_position(raw: AlpacaPosition) -> Position | None:
    """A position in whole shares (negative when short); None for a fractional remainder under one share."""
    qty = abs(Decimal(str(raw.qty)))
    whole = int(qty)  # fractional shares (bought elsewhere) are below openbell's whole-share books
    if not whole:
        return None
    signed = -whole if raw.side == PositionSide.SHORT else whole
    return Position(Symbol(raw.symbol), signed, Decimal(str(raw.avg_entry_price)))


def to_account(raw: TradeAccount, *, paper: bool) -> Account:
    amounts = {"cash": raw.cash, "equity": raw.equity, "buying_power": raw.buying_power}
    missing = [name for name, value in amounts.items() if value is None]
    if missing:
        raise ValueError(f"Alpaca's account has no {', '.join(missing)}")
    cash, equity, buying_power = (Decimal(str(value)) for value in amounts.values())  # strings, all present
    return Account(
        cash=cash,
        equity=equity,
        buying_power=buying_power,
        paper=paper,
        pattern_day_trader=raw.pattern_day_trader,  # None since Alpaca dropped the field (2026-07-06)
        day_trade_count=raw.daytrade_count,
    )


def _shares(value: str | float | None) -> int:
    if value is None or value == "":
        return 0
    qty = Decimal(str(value))
    if qty != qty.to_integral_value():
        raise ValueError(f"Alpaca reports {qty} shares on an openbell order; openbell trades whole shares")
    return int(qty)


def _dec(value: str | float | None) -> Decimal | None:
    return None if value is None or value == "" else Decimal(str(value))


def _ny(moment: datetime) -> datetime:
    return moment.astimezone(NEW_YORK)
