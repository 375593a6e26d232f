"""The Alpaca mapping without a network: our intents to alpaca-py requests, Alpaca's JSON to our orders and fills."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from alpaca.trading.enums import OrderStatus as AlpacaStatus
from alpaca.trading.models import Order as AlpacaOrder
from alpaca.trading.models import Position as AlpacaPosition
from alpaca.trading.models import TradeAccount

from openbell.core.exits import ExitPolicy
from openbell.core.orders import breakeven_exit, liquidation, moo_entry, protective_exit
from openbell.core.types import ClientOrderId, OrderIntent, OrderStatus, OrderType, Purpose, Side, Symbol
from openbell.venues.alpaca import mapping
from openbell.venues.alpaca.mapping import Placed
from openbell.venues.broker import Account

DAY = date(2025, 3, 7)
ABC = Symbol("ABC")
ENTRY, TARGET, STOP = (ClientOrderId(f"ob-20250307-ABC-{p}") for p in ("entry", "target", "stop"))


def raw(client_order_id: str = ENTRY, **fields) -> AlpacaOrder:
    """An Alpaca order as alpaca-py parses it from the v2 JSON (strings for numbers, UTC times)."""
    order = {
        "id": "61e69015-8549-4bfd-b9c3-01e75843f47d", "client_order_id": client_order_id,
        "created_at": "2025-03-07T14:00:00Z", "updated_at": "2025-03-07T14:00:00Z",
        "submitted_at": "2025-03-07T14:00:00Z", "filled_at": None, "canceled_at": None, "expired_at": None,
        "symbol": "ABC", "asset_class": "us_equity", "qty": "100", "filled_qty": "0", "filled_avg_price": None,
        "order_class": "simple", "type": "market", "order_type": "market", "side": "buy", "time_in_force": "opg",
        "limit_price": None, "stop_price": None, "status": "accepted", "extended_hours": False, "legs": None,
    }  # fmt: skip
    return AlpacaOrder(**(order | fields))


def oco(parent_status: str = "new", leg_status: str = "held", **leg_fields) -> AlpacaOrder:
    leg = raw(
        "3f0c7c1e-7a7b-4f0e-9d59-7c2a4d3c1b2a", id="0d5b97c8-84a2-52fb-b239-9e87d74459f6", order_class="oco",
        type="stop", order_type="stop", side="sell", time_in_force="day", stop_price="49.55", status=leg_status,
        **leg_fields,
    )  # fmt: skip
    return raw(
        TARGET, order_class="oco", type="limit", order_type="limit", side="sell", time_in_force="day",
        limit_price="51.3", status=parent_status, legs=[leg.model_dump()],
    )  # fmt: skip


# --- requests --------------------------------------------------------------------------------
def test_a_market_on_open_entry_becomes_a_market_opg_order_with_our_id():
    request = mapping.order_request(moo_entry(DAY, ABC, 120))

    assert request.to_request_fields() == {
        "symbol": "ABC", "qty": 120.0, "side": "buy", "type": "market", "time_in_force": "opg",
        "client_order_id": "ob-20250307-ABC-entry",
    }  # fmt: skip


def test_the_protective_pair_becomes_one_oco_limit_order_carrying_the_targets_id():
    target, stop = protective_exit(DAY, ABC, 120, Decimal("50.00"), ExitPolicy())

    request = mapping.oco_request(target, stop)

    assert request.to_request_fields() == {
        "symbol": "ABC", "qty": 120.0, "side": "sell", "type": "limit", "time_in_force": "day", "order_class": "oco",
        "take_profit": {"limit_price": 51.3}, "stop_loss": {"stop_price": 49.55},
        "client_order_id": "ob-20250307-ABC-target",
    }  # fmt: skip


def test_the_break_even_pair_is_one_oco_order_whose_stop_leg_is_found_again_by_its_own_id():
    target, stop = breakeven_exit(DAY, protective_exit(DAY, ABC, 120, Decimal("50.00"), ExitPolicy()), Decimal("50.00"))

    request = mapping.oco_request(target, stop)

    assert (request.client_order_id, request.stop_loss.stop_price) == ("ob-20250307-ABC-betarget", 50.0)
    assert mapping.stop_leg_id(target.client_order_id) == stop.client_order_id
    assert mapping.target_id_for(stop.client_order_id) == target.client_order_id
    assert mapping.oco_group_of(stop.client_order_id) == target.oco_group == "ob-20250307-ABC-beexit"


def test_a_liquidation_becomes_a_market_day_sell():
    request = mapping.order_request(liquidation(DAY, ABC, 120))

    assert request.to_request_fields() == {
        "symbol": "ABC", "qty": 120.0, "side": "sell", "type": "market", "time_in_force": "day",
        "client_order_id": "ob-20250307-ABC-eod",
    }  # fmt: skip


def test_a_sub_penny_price_survives_the_float_that_alpaca_py_sends():
    intent = OrderIntent(TARGET, ABC, Side.SELL, 10, OrderType.LIMIT, Purpose.TARGET, limit_price=Decimal("0.4321"))

    assert mapping.order_request(intent).to_request_fields()["limit_price"] == 0.4321


def test_an_oco_pair_whose_stop_id_cannot_be_found_again_is_refused():
    target, stop = protective_exit(DAY, ABC, 120, Decimal("50.00"), ExitPolicy())
    renamed = OrderIntent(ClientOrderId("ob-20250307-ABC-stoploss"), ABC, Side.SELL, 120, OrderType.STOP, Purpose.STOP,
                          stop_price=stop.stop_price, oco_group=stop.oco_group)  # fmt: skip

    with pytest.raises(ValueError, match="the stop's id must be ob-20250307-ABC-stop"):
        mapping.oco_request(target, renamed)


def test_an_oco_pair_of_different_sizes_is_refused():
    target, _ = protective_exit(DAY, ABC, 120, Decimal("50.00"), ExitPolicy())
    _, stop = protective_exit(DAY, ABC, 100, Decimal("50.00"), ExitPolicy())

    with pytest.raises(ValueError, match="same symbol and quantity"):
        mapping.oco_request(target, stop)


# --- statuses --------------------------------------------------------------------------------
def test_every_alpaca_status_falls_in_exactly_one_group():
    groups = [mapping.WORKING_STATUSES, mapping.FILLED_STATUSES, mapping.CANCELLED_STATUSES,
              mapping.EXPIRED_STATUSES, mapping.REJECTED_STATUSES]  # fmt: skip

    assert sorted(s.value for g in groups for s in g) == sorted(s.value for s in AlpacaStatus)


@pytest.mark.parametrize(
    ("alpaca", "ours"),
    [
        ("new", OrderStatus.NEW), ("accepted", OrderStatus.NEW), ("pending_new", OrderStatus.NEW),
        ("partially_filled", OrderStatus.PARTIALLY_FILLED), ("held", OrderStatus.NEW), ("pending_cancel", OrderStatus.NEW),
        ("filled", OrderStatus.FILLED), ("canceled", OrderStatus.CANCELLED), ("rejected", OrderStatus.REJECTED),
        ("expired", OrderStatus.EXPIRED), ("done_for_day", OrderStatus.EXPIRED),
    ],
)  # fmt: skip
def test_alpaca_statuses_map_to_ours(alpaca, ours):
    assert mapping.to_status(raw(status=alpaca)) is ours


def test_a_day_that_ended_with_every_share_filled_counts_as_filled():
    assert mapping.to_status(raw(status="done_for_day", filled_qty="100", filled_avg_price="50")) is OrderStatus.FILLED


def test_a_partially_filled_order_maps_to_partially_filled_with_its_shares_and_is_still_open():
    order = mapping.to_order(Placed(ENTRY, raw(status="partially_filled", filled_qty="40", filled_avg_price="50.01")))

    assert (order.status, order.filled_qty, order.avg_fill_price) == (OrderStatus.PARTIALLY_FILLED, 40, Decimal("50.01"))
    assert order.is_open() and not order.is_done()


def test_a_cancel_pending_on_a_partly_filled_order_is_still_partially_filled():
    pending = raw(status="pending_cancel", filled_qty="40", filled_avg_price="50")

    assert mapping.to_status(pending) is OrderStatus.PARTIALLY_FILLED


# --- orders ----------------------------------------------------------------------------------
def test_an_entry_order_maps_back_to_its_intent_with_decimal_prices_and_new_york_times():
    order = mapping.to_order(Placed(ENTRY, raw(status="filled", filled_qty="100", filled_avg_price="50.0123")))

    assert order.intent == moo_entry(DAY, ABC, 100)
    assert order.status is OrderStatus.FILLED
    assert (order.filled_qty, order.avg_fill_price) == (100, Decimal("50.0123"))
    assert order.submitted_at.isoformat() == "2025-03-07T09:00:00-05:00"


def test_our_orders_are_picked_from_a_listing_and_the_oco_leg_becomes_our_stop():
    foreign = raw("web-ui-order-17", id="9a3c1f0e-0000-4000-8000-000000000001")
    yesterday = raw("ob-20250306-ABC-entry", id="9a3c1f0e-0000-4000-8000-000000000002")

    placed = mapping.placed_orders([foreign, yesterday, raw(), oco()], DAY)

    assert [p.client_order_id for p in placed] == [ENTRY, TARGET, STOP]
    target, stop = (mapping.to_order(p) for p in placed[1:])
    exit_target, exit_stop = protective_exit(DAY, ABC, 100, Decimal("50.00"), ExitPolicy())
    assert (target.intent, stop.intent) == (exit_target, exit_stop)
    assert (target.status, stop.status) == (OrderStatus.NEW, OrderStatus.NEW)  # a held stop leg is working


def test_a_cancelled_oco_half_names_the_half_that_filled():
    parent = oco(parent_status="canceled", leg_status="filled", filled_qty="100", filled_avg_price="49.55")

    target, stop = mapping.oco_pair(parent)

    assert target.status is OrderStatus.CANCELLED
    assert target.reason == "one-cancels-other: ob-20250307-ABC-stop filled"
    assert (stop.status, stop.avg_fill_price) == (OrderStatus.FILLED, Decimal("49.55"))


def test_an_oco_order_without_its_leg_cannot_be_paired():
    with pytest.raises(ValueError, match="without its stop leg"):
        mapping.oco_pair(raw(TARGET, order_class="oco", type="limit", side="sell", time_in_force="day", limit_price="51.3"))


def test_same_order_compares_what_is_traded_not_how_a_price_is_spelled():
    target, _ = protective_exit(DAY, ABC, 100, Decimal("50.00"), ExitPolicy())
    order, _ = mapping.oco_pair(oco())

    assert mapping.same_order(target, order)  # 51.3 at Alpaca, 51.30 in the intent
    assert not mapping.same_order(moo_entry(DAY, ABC, 101), mapping.to_order(Placed(ENTRY, raw())))


def test_a_fractional_quantity_on_our_order_is_refused_not_rounded():
    with pytest.raises(ValueError, match="whole shares"):
        mapping.to_order(Placed(ENTRY, raw(qty="10.5")))


# --- fills -----------------------------------------------------------------------------------
def test_a_filled_order_gives_one_fill_named_by_alpaca_id_and_quantity_without_commission():
    filled = raw(status="filled", filled_qty="100", filled_avg_price="50.02", filled_at="2025-03-07T14:30:00.5Z")

    fill = mapping.to_fill(Placed(ENTRY, filled))

    assert fill.fill_id == "61e69015-8549-4bfd-b9c3-01e75843f47d-100"
    assert (fill.client_order_id, fill.side, fill.qty, fill.price, fill.commission) == (
        ENTRY, Side.BUY, 100, Decimal("50.02"), Decimal(0)
    )  # fmt: skip
    assert fill.ts.isoformat() == "2025-03-07T09:30:00.500000-05:00"


def test_a_working_partial_fill_is_not_reported_until_it_is_final():
    working = raw(status="partially_filled", filled_qty="40", filled_avg_price="50")
    cancelled = raw(status="canceled", filled_qty="40", filled_avg_price="50", canceled_at="2025-03-07T20:45:00Z")

    assert mapping.to_fill(Placed(ENTRY, working)) is None
    assert (mapping.to_fill(Placed(ENTRY, cancelled)).qty, mapping.to_fill(Placed(ENTRY, cancelled)).fill_id[-3:]) == (
        40, "-40"
    )  # fmt: skip


def test_an_unfilled_order_gives_no_fill():
    assert mapping.to_fill(Placed(ENTRY, raw(status="expired"))) is None


# --- positions and account -------------------------------------------------------------------
def _position(qty: str, side: str = "long") -> AlpacaPosition:
    return AlpacaPosition(
        asset_id="904837e3-3b76-47ec-b432-046db621571b", symbol="AAPL", exchange="NASDAQ", asset_class="us_equity",
        avg_entry_price="187.4512", qty=qty, side=side, cost_basis="0",
    )  # fmt: skip


def test_positions_keep_whole_shares_and_the_sign_of_a_short():
    assert mapping.to_position(_position("25")).qty == 25
    assert mapping.to_position(_position("-25", "short")).qty == -25
    assert mapping.to_position(_position("2.75")).qty == 2
    assert mapping.to_position(_position("0.5")) is None
    assert mapping.to_position(_position("25")).avg_price == Decimal("187.4512")


def test_the_account_maps_to_decimals_and_tolerates_the_dropped_day_trading_fields():
    account = TradeAccount(
        id="0b11f089-722d-4ced-9beb-e2eeed3637dc", account_number="PA3FAKE0001", status="ACTIVE",
        cash="1500.25", equity="101234.56", buying_power="3000.50",
    )  # fmt: skip

    assert mapping.to_account(account, paper=True) == Account(
        cash=Decimal("1500.25"), equity=Decimal("101234.56"), buying_power=Decimal("3000.50"), paper=True
    )


def test_the_account_reports_pattern_day_trading_where_alpaca_still_sends_it():
    account = TradeAccount(
        id="0b11f089-722d-4ced-9beb-e2eeed3637dc", account_number="PA3FAKE0001", status="ACTIVE", cash="1",
        equity="1", buying_power="1", pattern_day_trader=True, daytrade_count=3,
    )  # fmt: skip

    mapped = mapping.to_account(account, paper=False)

    assert (mapped.pattern_day_trader, mapped.day_trade_count, mapped.paper) == (True, 3, False)


# --- trailing stops --------------------------------------------------------------------------
TRAILING = ExitPolicy(trail_pct=Decimal("1.5"))


def test_a_trailing_stop_in_percent_becomes_a_trailing_stop_order_with_trail_percent():
    _, stop = protective_exit(DAY, ABC, 100, Decimal("50.00"), TRAILING)

    request = mapping.order_request(stop)

    assert request.to_request_fields() == {
        "symbol": "ABC", "qty": 100.0, "side": "sell", "type": "trailing_stop", "time_in_force": "day",
        "client_order_id": "ob-20250307-ABC-stop", "trail_percent": 1.5,
    }  # fmt: skip


def test_a_trailing_stop_in_dollars_becomes_a_trailing_stop_order_with_trail_price():
    _, stop = protective_exit(DAY, ABC, 100, Decimal("50.00"), ExitPolicy(trail_atr=Decimal(2)), atr=Decimal("0.40"))

    request = mapping.order_request(stop)

    assert (request.type, request.trail_price, request.trail_percent) == ("trailing_stop", 0.8, None)


def test_a_trailing_stop_cannot_be_the_leg_of_an_alpaca_one_cancels_other_order():
    target, stop = protective_exit(DAY, ABC, 100, Decimal("50.00"), TRAILING)

    with pytest.raises(ValueError, match="no trailing stop"):
        mapping.oco_request(target, stop)


def test_an_alpaca_trailing_stop_maps_back_to_the_same_order():
    _, stop = protective_exit(DAY, ABC, 100, Decimal("50.00"), TRAILING)
    reported = raw(
        STOP, type="trailing_stop", order_type="trailing_stop", side="sell", time_in_force="day",
        trail_percent="1.5", stop_price="49.26", hwm="50.01", status="new",
    )  # fmt: skip

    order = mapping.to_order(Placed(STOP, reported))

    assert (order.intent.order_type, order.intent.trail_percent, order.intent.stop_price) == (
        OrderType.TRAILING_STOP,
        Decimal("1.5"),
        None,
    )
    assert mapping.same_order(stop, order)
