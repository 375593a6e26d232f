"""Order states: which are working and which are done, and the order time-to-live."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from openbell.core.orders import moo_entry
from openbell.core.types import DONE_STATES, OPEN_STATES, Order, OrderStatus, Symbol, working_status

NY = ZoneInfo("America/New_York")
DAY = date(2025, 3, 7)
OPEN = datetime.combine(DAY, time(9, 30), tzinfo=NY)
TTL = timedelta(seconds=90)


def order(status: OrderStatus, filled: int = 0, submitted_at: datetime = OPEN - timedelta(minutes=10)) -> Order:
    return Order(moo_entry(DAY, Symbol("ABC"), 100), status, "b-1", submitted_at, filled, Decimal("50") if filled else None)


def test_every_state_is_either_working_or_done():
    assert OPEN_STATES | DONE_STATES == set(OrderStatus)
    assert not OPEN_STATES & DONE_STATES


@pytest.mark.parametrize(
    ("status", "working"),
    [(OrderStatus.NEW, True), (OrderStatus.PARTIALLY_FILLED, True), (OrderStatus.FILLED, False),
     (OrderStatus.CANCELLED, False), (OrderStatus.REJECTED, False), (OrderStatus.EXPIRED, False)],
)  # fmt: skip
def test_a_partially_filled_order_is_still_open_and_not_done(status, working):
    assert (order(status).is_open(), order(status).is_done()) == (working, not working)


def test_a_working_order_is_partially_filled_once_a_share_filled():
    assert (working_status(0), working_status(1), working_status(99)) == (
        OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED, OrderStatus.PARTIALLY_FILLED
    )  # fmt: skip


def test_a_market_on_open_order_counts_its_time_to_live_from_the_open():
    before_open = order(OrderStatus.NEW)  # sent at 09:20

    assert not before_open.past_ttl(OPEN + timedelta(seconds=89), TTL, OPEN)
    assert before_open.past_ttl(OPEN + TTL, TTL, OPEN)


def test_an_order_sent_after_the_open_counts_from_when_it_was_sent():
    sent = order(OrderStatus.NEW, submitted_at=OPEN + timedelta(minutes=5))

    assert not sent.past_ttl(OPEN + timedelta(minutes=6), TTL, OPEN)
    assert sent.past_ttl(OPEN + timedelta(minutes=6, seconds=30), TTL, OPEN)


def test_a_partly_filled_order_outlives_its_ttl_and_a_done_one_never_does():
    late = OPEN + timedelta(hours=1)

    assert order(OrderStatus.PARTIALLY_FILLED, 40).past_ttl(late, TTL, OPEN)
    assert not order(OrderStatus.CANCELLED, 40).past_ttl(late, TTL, OPEN)
    assert not order(OrderStatus.FILLED, 100).past_ttl(late, TTL, OPEN)
