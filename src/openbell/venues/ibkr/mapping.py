"""Translation between openbell's orders and ib_async's objects: pure functions, no network, no clock.

Outbound: an `OrderIntent` becomes a `Stock(symbol, "SMART", "USD")` and an ib_async `Order` whose
`orderRef` is our deterministic client order id (market-on-open: MKT + tif OPG; protective pair: LMT and
STP sharing an OCA group with ocaType 1, or LMT and TRAIL, whose `trailingPercent` or `auxPrice` (the amount)
is the trail and `trailStopPrice` the level it starts from; liquidation: MKT DAY). Inbound: ib_async's `Trade`, `Fill`,
`Position` and account values become our `Order`, `Fill`, `Position` and `Account`, with Decimal at the
boundary. IB's error codes become the exception the caller should act on (see `error_for`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum

from ib_async import AccountValue, Contract, LimitOrder, MarketOrder, Stock, StopOrder, Trade
from ib_async import Fill as IbFill
from ib_async import Order as IbOrder
from ib_async import Position as IbPosition

from openbell.core.prices import round_to_tick
from openbell.core.types import (
    NEW_YORK,
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
    working_status,
)
from openbell.errors import ConfigError, OpenbellError, OrderRejected, TransientError
from openbell.venues.broker import Account, required

_UNSET_DOUBLE = 1.7976931348623157e308  # ib_async.util.UNSET_DOUBLE: IB's "no value"

# --- IB order states, grouped by what they mean for us ------------------------------------------
WORKING_STATES = frozenset(
    {"PendingSubmit", "ApiPending", "PreSubmitted", "Submitted", "PendingCancel", "ApiUpdate", "ValidationError"}
)  # ValidationError is ib_async's name for a warning on a live order; PendingCancel is still working
FILLED_STATES = frozenset({"Filled"})
CANCELLED_STATES = frozenset({"Cancelled", "ApiCancelled"})
INACTIVE_STATES = frozenset({"Inactive"})  # received by IB but no longer active: rejected or killed by IB
NOT_ACKNOWLEDGED = frozenset({"", "PendingSubmit"})  # only our side has seen the order so far

# --- IB error codes, grouped by what the caller should do -----------------------------------------
REJECTED = 201  # "Order rejected - reason: ..."
CANCELLED = 202  # "Order Canceled - reason: ..." (a confirmation, not a failure)
NO_SECURITY_DEFINITION = 200
CONNECTIVITY_LOST = 1100  # TWS lost its link to IB's servers (our socket to TWS is fine)
CONNECTIVITY_RESTORED_DATA_LOST = 1101  # back, but subscriptions were lost: resynchronise
CONNECTIVITY_RESTORED = 1102  # back, nothing lost
CLIENT_ID_IN_USE = 326
PACING = frozenset({100, 162})  # max message rate exceeded; historical data pacing violation
# Warnings after which ib_async keeps the order live (as ib_async's wrapper lists them; 110, a price off the
# tick, is left out: on a new order ib_async cancels it, so for us it is a rejection).
_IB_WARNINGS = frozenset({105, 165, 321, 329, 399, 404, 434, 492, 10167})


class IbErrorKind(StrEnum):
    REJECTED = "rejected"  # the order was refused: never retry blindly
    CANCELLED = "cancelled"  # confirmation of a cancel
    CONNECTIVITY_LOST = "connectivity_lost"
    CONNECTIVITY_RESTORED = "connectivity_restored"
    CLIENT_ID_IN_USE = "client_id_in_use"
    PACING = "pacing"
    INFORMATION = "information"  # farm status (2100-2199) and warnings: the order stays live


def error_kind(code: int) -> IbErrorKind:
    """What an IB error code means for the caller."""
    if code == CANCELLED:
        return IbErrorKind.CANCELLED
    if code == CONNECTIVITY_LOST:
        return IbErrorKind.CONNECTIVITY_LOST
    if code in (CONNECTIVITY_RESTORED_DATA_LOST, CONNECTIVITY_RESTORED):
        return IbErrorKind.CONNECTIVITY_RESTORED
    if code == CLIENT_ID_IN_USE:
        return IbErrorKind.CLIENT_ID_IN_USE
    if code in PACING:
        return IbErrorKind.PACING
    if code in _IB_WARNINGS or 2100 <= code < 2200:
        return IbErrorKind.INFORMATION
    return IbErrorKind.REJECTED


def error_for(
    code: int, message: str, client_order_id: str | None = None, client_id: int | None = None
) -> OpenbellError | None:
    """The exception an IB error code stands for; None when it is not a failure (a cancel, farm status)."""
    kind = error_kind(code)
    if kind is IbErrorKind.REJECTED:
        return OrderRejected(client_order_id or "-", message, code)
    if kind is IbErrorKind.CONNECTIVITY_LOST:
        return TransientError(
            f"TWS lost its connection to Interactive Brokers (error {code}: {message}); retry once it is back"
        )
    if kind is IbErrorKind.PACING:
        return TransientError(f"Interactive Brokers asked to slow down (error {code}: {message}); retry after a pause")
    if kind is IbErrorKind.CLIENT_ID_IN_USE:
        return client_id_in_use(message, client_id)
    return None


def client_id_in_use(message: str, client_id: int | None = None) -> ConfigError:
    """TWS refused the connection (error 326): the client id is taken by another connection."""
    who = f"client id {client_id}" if client_id is not None else "the client id"
    return ConfigError(
        f"TWS/IB Gateway refused the connection: {who} is already in use ({message}). Another program or a "
        "second openbell run is connected with it: stop that connection (the same id is what lets a restart "
        "recover its orders), or set OPENBELL_BROKER__IBKR__CLIENT_ID to a free id"
    )


_ERROR_LOG = re.compile(r"^(?:Error|Warning) -?\d+, reqId -?\d+: (?P<reason>.*?)(?:, contract: .*)?$", re.DOTALL)


def order_error(trade: Trade) -> tuple[int, str] | None:
    """The last failure IB reported for an order, as (code, IB's own message); warnings and cancels are not failures."""
    for entry in reversed(trade.log):
        if entry.errorCode and error_kind(entry.errorCode) not in (IbErrorKind.INFORMATION, IbErrorKind.CANCELLED):
            match = _ERROR_LOG.match(entry.message)
            return entry.errorCode, match.group("reason") if match else entry.message
    return None


# --- client order ids ----------------------------------------------------------------------------
_OUR_REF = re.compile(rf"^ob-(?P<day>\d{{8}})-(?P<symbol>.+)-(?P<purpose>{'|'.join(p.value for p in Purpose)})$")


@dataclass(frozen=True, slots=True)
class OrderRef:
    """What our deterministic client order id says: the day, the symbol and why the order was sent."""

    trade_date: date
    symbol: Symbol
    purpose: Purpose


def parse_order_ref(order_ref: str) -> OrderRef | None:
    """Our `ob-YYYYMMDD-SYMBOL-purpose` id taken apart, or None for anyone else's orderRef."""
    match = _OUR_REF.match(order_ref or "")
    if match is None:
        return None
    try:
        day = datetime.strptime(match["day"], "%Y%m%d").date()
    except ValueError:
        return None
    return OrderRef(day, Symbol(match["symbol"]), Purpose(match["purpose"]))


# --- outbound ------------------------------------------------------------------------------------
def to_contract(symbol: str) -> Contract:
    """A US stock routed by IB's SMART router."""
    return Stock(symbol, "SMART", "USD")


def to_ib_order(intent: OrderIntent, account: str = "") -> IbOrder:
    """The ib_async order for an intent; `orderRef` carries our client order id so IB remembers it for us."""
    action = "BUY" if intent.side is Side.BUY else "SELL"
    common: dict = {"orderRef": intent.client_order_id, "tif": "OPG" if intent.tif is TimeInForce.OPG else "DAY"}
    if account:
        common["account"] = account
    if intent.oco_group:
        common |= {"ocaGroup": intent.oco_group, "ocaType": 1}  # 1: cancel the rest, with overfill protection
    if intent.order_type is OrderType.MARKET:
        return MarketOrder(action, intent.qty, **common)
    if intent.order_type is OrderType.LIMIT:
        return LimitOrder(action, intent.qty, float(required(intent.limit_price, "limit_price")), **common)
    if intent.order_type is OrderType.TRAILING_STOP:
        if intent.trail_percent is not None:
            common["trailingPercent"] = float(intent.trail_percent)
        else:
            common["auxPrice"] = float(required(intent.trail_amount, "trail_amount"))
        if intent.stop_price is not None:
            common["trailStopPrice"] = float(intent.stop_price)
        return IbOrder(action=action, totalQuantity=intent.qty, orderType="TRAIL", **common)
    return StopOrder(action, intent.qty, float(required(intent.stop_price, "stop_price")), **common)


# --- inbound -------------------------------------------------------------------------------------
_ORDER_TYPES = {"MKT": OrderType.MARKET, "LMT": OrderType.LIMIT, "STP": OrderType.STOP, "TRAIL": OrderType.TRAILING_STOP}


def intent_from_ib(contract: Contract, order: IbOrder) -> OrderIntent | None:
    """Rebuild our intent from an order IB reports; None unless it carries our orderRef and a shape we send."""
    ref = parse_order_ref(order.orderRef)
    order_type = _ORDER_TYPES.get(order.orderType)
    if ref is None or order_type is None or order.action not in ("BUY", "SELL") or contract.symbol != ref.symbol:
        return None
    qty = _number(order.totalQuantity)
    if qty is None or qty <= 0 or qty != int(qty):
        return None
    try:
        return OrderIntent(
            client_order_id=ClientOrderId(order.orderRef),
            symbol=ref.symbol,
            side=Side.BUY if order.action == "BUY" else Side.SELL,
            qty=int(qty),
            order_type=order_type,
            purpose=ref.purpose,
            tif=TimeInForce.OPG if order.tif == "OPG" else TimeInForce.DAY,
            limit_price=_tick_price(order.lmtPrice) if order_type is OrderType.LIMIT else None,
            stop_price=_tick_price(order.auxPrice) if order_type is OrderType.STOP else None,
            oco_group=order.ocaGroup or None,
            # A trailing stop's trailStopPrice moves as it trails: only the trail itself is compared.
            trail_percent=_decimal(order.trailingPercent) if order_type is OrderType.TRAILING_STOP else None,
            trail_amount=_decimal(order.auxPrice)
            if order_type is OrderType.TRAILING_STOP and _number(order.trailingPercent) is None
            else None,
        )
    except ValueError:  # e.g. a limit order whose price IB did not report
        return None


_EXIT_TYPE = {  # the halves of a protective pair, the first one or its break-even replacement; the rest are market sells
    Purpose.TARGET: OrderType.LIMIT,
    Purpose.BE_TARGET: OrderType.LIMIT,
    Purpose.STOP: OrderType.STOP,
    Purpose.BE_STOP: OrderType.STOP,
}


def intent_from_fills(fills: Sequence[Fill]) -> OrderIntent | None:
    """Rebuild an intent from executions alone, for an order TWS no longer reports (say after a TWS restart).

    The order's type follows from why it was sent; limit and stop prices, which executions do not carry,
    are taken as the fill price.
    """
    ref = parse_order_ref(fills[0].client_order_id) if fills else None
    if ref is None:
        return None
    price = fills[0].price
    order_type = _EXIT_TYPE.get(ref.purpose, OrderType.MARKET)
    return OrderIntent(
        client_order_id=fills[0].client_order_id,
        symbol=ref.symbol,
        side=fills[0].side,
        qty=sum(f.qty for f in fills),
        order_type=order_type,
        purpose=ref.purpose,
        tif=TimeInForce.OPG if ref.purpose is Purpose.ENTRY else TimeInForce.DAY,
        limit_price=price if order_type is OrderType.LIMIT else None,
        stop_price=price if order_type is OrderType.STOP else None,
    )


def differences(sent: OrderIntent, reported: OrderIntent, *, prices: bool = True) -> list[str]:
    """Fields in which an order IB already has differs from the one we are about to send.

    Fields IB left out are not compared, nor prices when `prices` is False (a done order rebuilt from its
    executions carries the fill price where the limit or stop was).
    """
    names = ["symbol", "side", "qty", "order_type", "tif", "oco_group"]
    names += ["limit_price", "stop_price", "trail_percent", "trail_amount"] if prices else []
    return [n for n in names if getattr(reported, n) is not None and getattr(sent, n) != getattr(reported, n)]


def to_status(ib_status: str, error: tuple[int, str] | None = None) -> OrderStatus:
    """Our status for an IB order status; an order IB refused is REJECTED whatever state ib_async left it in."""
    if ib_status in FILLED_STATES:
        return OrderStatus.FILLED
    if error is not None and (ib_status in CANCELLED_STATES or ib_status in INACTIVE_STATES):
        return OrderStatus.REJECTED
    if ib_status in CANCELLED_STATES:
        return OrderStatus.CANCELLED
    if ib_status in INACTIVE_STATES:
        return OrderStatus.REJECTED  # ib_async counts Inactive as done: IB will not work this order
    return OrderStatus.NEW


def to_order(
    intent: OrderIntent,
    trade: Trade | None,
    fills: Sequence[Fill],
    submitted_at: datetime,
    *,
    cancel_requested: bool = False,
) -> Order:
    """Our view of one order from ib_async's `Trade` (None: known from executions only) and our fills of it.

    Filled shares and the average price come from the executions when there are any: a completed order
    reported after a restart carries no fill details of its own. A working order with shares filled
    (`orderStatus.filled`, or executions) is partially filled.
    """
    filled = sum(f.qty for f in fills)
    average = _average_price(fills)
    if trade is None:
        status, reason = OrderStatus.FILLED, "rebuilt from executions: TWS did not report the order itself"
        broker_id = f"exec {fills[0].fill_id}" if fills else "-"
    else:
        error = order_error(trade)
        status = to_status(trade.orderStatus.status, error)
        filled = max(filled, int(trade.orderStatus.filled or 0), int(_number(trade.order.filledQuantity) or 0))
        if average is None and trade.orderStatus.avgFillPrice and trade.orderStatus.avgFillPrice < _UNSET_DOUBLE:
            average = Decimal(repr(trade.orderStatus.avgFillPrice))
        reason = None
        if status is OrderStatus.REJECTED:
            reason = error[1] if error else "inactive at IB: rejected or cancelled by Interactive Brokers"
        elif status is OrderStatus.CANCELLED:
            if intent.tif is TimeInForce.OPG and not cancel_requested and filled == 0:
                status, reason = OrderStatus.EXPIRED, "not filled in the opening auction: market-on-open order unfilled"
            elif cancel_requested:
                reason = "cancelled by request"
            elif intent.oco_group:
                reason = f"one-cancels-other: another order of {intent.oco_group} filled"
            else:
                reason = "cancelled by Interactive Brokers"
        broker_id = broker_order_id(trade)
    if filled >= intent.qty:
        status = OrderStatus.FILLED  # the executions are the truth, whatever status message is still on its way
    elif status is OrderStatus.NEW:
        status = working_status(filled)  # IB keeps a partly filled order Submitted: partially filled for us
    return Order(
        intent=intent,
        status=status,
        broker_order_id=broker_id,
        submitted_at=submitted_at,
        filled_qty=filled,
        avg_fill_price=average,
        reason=reason,
    )


def broker_order_id(trade: Trade) -> str:
    """IB's permanent id once TWS has acknowledged the order, else the session's client/order id pair."""
    if trade.order.permId:
        return str(trade.order.permId)
    return f"{trade.order.clientId}/{trade.order.orderId}"


def has_commission(fill: IbFill) -> bool:
    """True once TWS has sent the commission report of this execution."""
    return bool(fill.commissionReport.execId)


def to_fill(fill: IbFill) -> Fill:
    """Our fill for an IB execution; commission 0 until its report arrives (see `has_commission`)."""
    execution = fill.execution
    commission = Decimal(repr(fill.commissionReport.commission)) if has_commission(fill) else Decimal(0)
    return Fill(
        fill_id=execution.execId,
        client_order_id=ClientOrderId(execution.orderRef),
        symbol=Symbol(fill.contract.symbol),
        side=Side.BUY if execution.side == "BOT" else Side.SELL,
        qty=int(execution.shares),
        price=Decimal(repr(execution.price)),
        commission=commission,
        ts=execution.time.astimezone(NEW_YORK),
    )


def to_position(position: IbPosition) -> Position | None:
    """A stock position; None for other instruments and flat lines."""
    if position.contract.secType != "STK" or not position.position:
        return None
    return Position(
        Symbol(position.contract.symbol), int(position.position), Decimal(repr(position.avgCost)).quantize(Decimal("0.0001"))
    )


ACCOUNT_TAGS = ("NetLiquidation", "TotalCashValue", "BuyingPower")
_PDT_DAY_TRADES = 3  # FINRA: a fourth day trade within five business days marks a pattern day trader


def to_account(values: Iterable[AccountValue], account: str) -> Account:
    """Our account from IB's account values (updates or summary) of one account.

    Equity is NetLiquidation, cash TotalCashValue, buying power BuyingPower, in USD (or the base currency).
    IB reports day trades *remaining* (-1: not limited); the account's day-trade count is 3 minus that.

    Raises ValueError when a needed value is missing.
    """
    by_tag: dict[str, dict[str, str]] = {}
    for value in values:
        if value.account == account:
            by_tag.setdefault(value.tag, {})[value.currency] = value.value
    amounts = {}
    for tag in ACCOUNT_TAGS:
        currencies = by_tag.get(tag, {})
        raw = currencies.get("USD") or currencies.get("BASE")
        if raw is None:
            raise ValueError(f"IB reported no {tag} in USD for account {account}")
        amounts[tag] = Decimal(raw)
    remaining = next(iter(by_tag.get("DayTradesRemaining", {}).values()), None)
    day_trades = None
    if remaining not in (None, ""):
        left = int(Decimal(remaining))
        day_trades = _PDT_DAY_TRADES - left if 0 <= left <= _PDT_DAY_TRADES else None
    return Account(
        cash=amounts["TotalCashValue"],
        equity=amounts["NetLiquidation"],
        buying_power=amounts["BuyingPower"],
        paper=is_paper_account(account),
        day_trade_count=day_trades,
    )


def is_paper_account(account: str) -> bool:
    """IB's paper accounts start with D (DU: individual, DF: advisor)."""
    return account.startswith("D")


def _average_price(fills: Sequence[Fill]) -> Decimal | None:
    shares = sum(f.qty for f in fills)
    if not shares:
        return None
    if len({f.price for f in fills}) == 1:
        return fills[0].price
    return (sum((f.qty * f.price for f in fills), Decimal(0)) / shares).quantize(Decimal("0.0001"))


def _number(value) -> float | None:
    if value is None or value == "":
        return None
    number = float(value)
    return None if math.isnan(number) or number >= _UNSET_DOUBLE else number


def _decimal(value) -> Decimal | None:
    """An IB double as the Decimal of its shortest repr; None when IB left it unset."""
    number = _number(value)
    return None if number is None else Decimal(repr(number))


def _tick_price(value) -> Decimal | None:
    number = _number(value)
    return None if number is None else round_to_tick(Decimal(repr(number)))
