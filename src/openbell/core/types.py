"""Domain types: the facts a trading day is made of (bars, orders, fills, positions, trades)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import NewType
from zoneinfo import ZoneInfo

Symbol = NewType("Symbol", str)
ClientOrderId = NewType("ClientOrderId", str)

NEW_YORK_TZ = "America/New_York"  # the exchanges' time zone, by name (DuckDB, pandas, Prefect crons)
NEW_YORK = ZoneInfo(NEW_YORK_TZ)  # every time of a trading day is New York time
MOO_CUTOFF = time(9, 28)  # the exchanges take market-on-open orders until 09:28 New York time
PAPER_STARTING_CASH = Decimal(100_000)  # the paper account's cash before its first day


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"


class OrderType(StrEnum):
    MARKET = "market"
    LIMIT = "limit"
    STOP = "stop"
    TRAILING_STOP = "trailing_stop"  # a sell stop that rises with the highest price since it was placed


class TimeInForce(StrEnum):
    DAY = "day"
    OPG = "opg"  # at the opening auction only: a market-on-open order is MARKET + OPG


class OrderStatus(StrEnum):
    NEW = "new"  # accepted by the broker and working, nothing filled yet
    PARTIALLY_FILLED = "partially_filled"  # working, some shares filled: `filled_qty` of `intent.qty`
    FILLED = "filled"
    CANCELLED = "cancelled"  # done; may have filled in part first (`filled_qty`)
    REJECTED = "rejected"
    EXPIRED = "expired"  # e.g. a market-on-open order with no opening print: unfilled (or filled in part)


OPEN_STATES = frozenset({OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED})
DONE_STATES = frozenset({OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED, OrderStatus.EXPIRED})


def working_status(filled_qty: int) -> OrderStatus:
    """The state of an order still working at the broker that has filled `filled_qty` shares so far."""
    return OrderStatus.PARTIALLY_FILLED if filled_qty > 0 else OrderStatus.NEW


class Purpose(StrEnum):
    """Why the system sent an order; part of its deterministic client order id."""

    ENTRY = "entry"
    TARGET = "target"
    STOP = "stop"
    EOD = "eod"
    KILL = "kill"  # the day's loss limit tripped: flatten now
    DAY_TARGET = "daytarget"  # the day's profit target was reached: flatten now and stop for the day
    FLATTEN = "flatten"  # flattened by hand (openbell flatten, the flatten-now deployment)
    SOFT_STOP = "softstop"  # the monitor sold at market: its own stop crossed (the broker refused or missed the pair)
    SOFT_TARGET = "softtarget"  # the monitor sold at market: its own target crossed
    TIME = "time"  # the time exit: sold at market time_exit_min minutes after the entry
    BE_TARGET = "betarget"  # the target of the pair that replaced the protective pair when the break-even raised its stop
    BE_STOP = "bestop"  # the stop of that pair, at the entry


class ExitReason(StrEnum):
    TARGET = "target"
    STOP = "stop"
    EOD = "eod"
    KILL_SWITCH = "kill_switch"
    DAY_TARGET = "day_target"
    MANUAL = "manual"
    TIME = "time"


EXIT_REASON_OF_PURPOSE = {
    Purpose.TARGET: ExitReason.TARGET,
    Purpose.STOP: ExitReason.STOP,
    Purpose.EOD: ExitReason.EOD,
    Purpose.KILL: ExitReason.KILL_SWITCH,
    Purpose.DAY_TARGET: ExitReason.DAY_TARGET,
    Purpose.FLATTEN: ExitReason.MANUAL,
    Purpose.SOFT_STOP: ExitReason.STOP,
    Purpose.SOFT_TARGET: ExitReason.TARGET,
    Purpose.TIME: ExitReason.TIME,
    Purpose.BE_TARGET: ExitReason.TARGET,
    Purpose.BE_STOP: ExitReason.STOP,
}
STOP_OF_TARGET = {Purpose.TARGET: Purpose.STOP, Purpose.BE_TARGET: Purpose.BE_STOP}  # the halves of a protective pair


def client_order_id(trade_date: date, symbol: str, purpose: Purpose) -> ClientOrderId:
    """The deterministic id of the order the system sends for (date, symbol, purpose).

    The same inputs always give the same id, so a retried or replayed submission is recognised
    by the broker (and by the store) instead of creating a second order.
    """
    return ClientOrderId(f"{our_prefix(trade_date)}{symbol}-{purpose.value}")


def our_prefix(trade_date: date) -> str:
    """Every client order id the system makes for `trade_date` starts with this."""
    return f"ob-{trade_date:%Y%m%d}-"


def is_ours(client_order_id: str, trade_date: date) -> bool:
    """True for an id the system made for `trade_date`; anyone else's orders are never touched."""
    return client_order_id.startswith(our_prefix(trade_date))


@dataclass(frozen=True, slots=True)
class Bar:
    """One minute (or day) of trading; `ts` is the start of the interval, New York time."""

    symbol: Symbol
    ts: datetime
    open: float
    high: float
    low: float
    close: float
    volume: int


@dataclass(frozen=True, slots=True)
class OrderIntent:
    """An order the system wants at the broker. Prices are tick-rounded Decimals."""

    client_order_id: ClientOrderId
    symbol: Symbol
    side: Side
    qty: int
    order_type: OrderType
    purpose: Purpose
    tif: TimeInForce = TimeInForce.DAY
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    oco_group: str | None = None  # orders sharing a group cancel each other when one fills
    trail_percent: Decimal | None = None  # a trailing stop's distance below the highest price: percent ...
    trail_amount: Decimal | None = None  # ... or dollars; stop_price, when set, is the level it never goes below

    def __post_init__(self) -> None:
        if self.qty <= 0:
            raise ValueError(f"{self.client_order_id}: qty must be a positive whole number of shares, got {self.qty}")
        if self.order_type is OrderType.LIMIT and self.limit_price is None:
            raise ValueError(f"{self.client_order_id}: a limit order needs limit_price")
        if self.order_type is OrderType.STOP and self.stop_price is None:
            raise ValueError(f"{self.client_order_id}: a stop order needs stop_price")
        trails = (self.trail_percent is not None) + (self.trail_amount is not None)
        if self.order_type is OrderType.TRAILING_STOP and trails != 1:
            raise ValueError(f"{self.client_order_id}: a trailing stop needs one of trail_percent and trail_amount")
        if self.order_type is not OrderType.TRAILING_STOP and trails:
            raise ValueError(f"{self.client_order_id}: trail_percent and trail_amount are for trailing stops only")


@dataclass(frozen=True, slots=True)
class Order:
    """An order as the broker reports it."""

    intent: OrderIntent
    status: OrderStatus
    broker_order_id: str
    submitted_at: datetime
    filled_qty: int = 0
    avg_fill_price: Decimal | None = None
    reason: str | None = None  # why it was rejected, cancelled or expired

    @property
    def client_order_id(self) -> ClientOrderId:
        return self.intent.client_order_id

    def is_open(self) -> bool:
        return self.status in OPEN_STATES

    def is_done(self) -> bool:
        return self.status in DONE_STATES

    def past_ttl(self, now: datetime, ttl: timedelta, session_open: datetime) -> bool:
        """True for a working order (unfilled or filled in part) that has worked `ttl` or longer by `now`.

        It works from when it was sent, or from the open when it was sent before it (a market-on-open
        order waits for the opening auction).
        """
        return self.is_open() and now - max(self.submitted_at, session_open) >= ttl


@dataclass(frozen=True, slots=True)
class Fill:
    """An execution. `commission` is what the broker charged for it."""

    fill_id: str
    client_order_id: ClientOrderId
    symbol: Symbol
    side: Side
    qty: int
    price: Decimal
    commission: Decimal
    ts: datetime


@dataclass(frozen=True, slots=True)
class Position:
    symbol: Symbol
    qty: int  # positive long, negative short
    avg_price: Decimal


@dataclass(frozen=True, slots=True)
class Trade:
    """One round trip: entry fill to exit fill of one symbol on one day."""

    trade_date: date
    symbol: Symbol
    shares: int
    entry_ts: datetime
    entry_price: Decimal
    exit_ts: datetime
    exit_price: Decimal
    exit_reason: ExitReason
    commission: Decimal
    pnl: Decimal  # (exit - entry) * shares - commission
    exit_order_id: ClientOrderId | None = None  # the order of the last exit fill

    @property
    def return_pct(self) -> float:
        return float((self.exit_price / self.entry_price - 1) * 100)
