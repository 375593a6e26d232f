"""The Broker protocol every adapter implements, so flows never branch on the broker."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Protocol

from openbell.core.types import ClientOrderId, Fill, Order, OrderIntent, OrderType, Position, Symbol
from openbell.errors import OrderRejected


@dataclass(frozen=True, slots=True)
class MooWindow:
    """When a broker accepts market-on-open orders for a session (New York time)."""

    opens: datetime
    cutoff: datetime

    def accepts(self, moment: datetime) -> bool:
        return self.opens <= moment <= self.cutoff


def check_market_on_open(intent: OrderIntent, window: MooWindow, now: datetime) -> None:
    """Refuse an opening-auction order that is not a market order, or that comes outside the broker's window."""
    if intent.order_type is not OrderType.MARKET:
        raise OrderRejected(intent.client_order_id, "only market orders can be market-on-open")
    if not window.accepts(now):
        raise OrderRejected(
            intent.client_order_id,
            f"market-on-open orders for {window.cutoff:%Y-%m-%d} are accepted from {window.opens:%Y-%m-%d %H:%M} "
            f"to {window.cutoff:%H:%M} New York time; it is {now:%Y-%m-%d %H:%M}",
        )


def required(value: Decimal | None, what: str) -> Decimal:
    """A price an order needs, which the caller knows is set (OrderIntent checks that its order type has it).

    Raises:
        ValueError: it is not set after all.
    """
    if value is None:
        raise ValueError(f"{what} is not set")
    return value


@dataclass(frozen=True, slots=True)
class Account:
    cash: Decimal
    equity: Decimal
    buying_power: Decimal
    paper: bool
    pattern_day_trader: bool | None = None  # where the broker reports it
    day_trade_count: int | None = None


class Broker(Protocol):
    name: str
    pairs_trailing_stops: bool  # a trailing stop can be the stop of a protective pair (else the monitor trails it)

    def moo_window(self, day: date) -> MooWindow:
        """When this broker accepts market-on-open orders for `day`."""
        ...

    def submit(self, intent: OrderIntent) -> Order:
        """Send an order. Idempotent: an id the broker already has returns that order, never a second one.

        Raises OrderRejected with the broker's reason when the broker refuses it.
        """
        ...

    def submit_oco(self, target: OrderIntent, stop: OrderIntent) -> tuple[Order, Order]:
        """Protective exits for a filled entry: a sell limit and a sell stop, one cancelling the other.

        Idempotent like `submit`. Brokers that take an OCO as one request (Alpaca) or as an OCA
        group (Interactive Brokers) get it that way; the pair comes back as (target, stop).
        """
        ...

    def cancel(self, client_order_id: ClientOrderId) -> Order:
        """Cancel a working order; an order already done is returned as it is."""
        ...

    def order(self, client_order_id: ClientOrderId) -> Order | None: ...

    def open_orders(self) -> list[Order]: ...

    def day_orders(self) -> list[Order]:
        """Every order of the trading day the broker knows, working or done, in one read (a fixed request budget).

        What an adapter can represent: the paper broker reports all its orders; Alpaca and Interactive
        Brokers report the system's own (`ob-YYYYMMDD-` ids; a stop leg under our stop's id), since
        others' orders carry no purpose. Callers keep the system's with `core.types.is_ours` all the same.
        """
        ...

    def fills_since(self, since: datetime | None = None) -> list[Fill]:
        """Fills of the trading day at or after `since` (all of them when None), in time order."""
        ...

    def positions(self) -> dict[Symbol, Position]: ...

    def account(self) -> Account: ...

    def close(self) -> None:
        """Release connections and persist state; the broker object is not used afterwards."""
        ...
