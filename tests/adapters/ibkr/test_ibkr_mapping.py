"""The IBKR mapping on its own: our intents to ib_async orders and back, IB states, fills and errors. No network."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from ib_async import AccountValue, CommissionReport, Execution, Option, Stock, Trade, TradeLogEntry
from ib_async import Fill as IbFill
from ib_async import OrderStatus as IbOrderStatus
from ib_async import Position as IbPosition

from openbell.core.exits import ExitPolicy
from openbell.core.orders import breakeven_exit, liquidation, moo_entry, protective_exit
from openbell.core.types import ClientOrderId, Fill, OrderStatus, OrderType, Position, Purpose, Side, Symbol, TimeInForce
from openbell.errors import ConfigError, OrderRejected, TransientError
from openbell.venues.ibkr import mapping

NY = ZoneInfo("America/New_York")
DAY = date(2025, 3, 7)
ABC = Symbol("ABC")
ENTRY = moo_entry(DAY, ABC, 100)
TARGET, STOP = protective_exit(DAY, ABC, 100, Decimal("50.00"), ExitPolicy())  # 51.30 and 49.55
EOD = liquidation(DAY, ABC, 100)
BE_TARGET, BE_STOP = breakeven_exit(DAY, (TARGET, STOP), Decimal("50.00"))  # the stop raised to the entry
SUBMITTED_AT = datetime(2025, 3, 7, 9, 20, tzinfo=NY)


def trade_of(intent, status: str, *, log: tuple[tuple[int, str], ...] = (), perm_id: int = 900000001) -> Trade:
    """ib_async's Trade for an order we sent, as its wrapper leaves it; log entries are (code, message) as IB sent them."""
    order = mapping.to_ib_order(intent)
    order.permId, order.orderId, order.clientId = perm_id, 4, 17
    entries = [TradeLogEntry(SUBMITTED_AT, status, f"Error {code}, reqId 4: {text}", code) for code, text in log]
    return Trade(mapping.to_contract(intent.symbol), order, IbOrderStatus(orderId=4, status=status, permId=perm_id),
                 [], entries)  # fmt: skip


def fill_of(order_ref: str, side: str, shares: float, price: float, *, commission: float | None = 1.0,
            at: datetime = datetime(2025, 3, 7, 14, 30, tzinfo=UTC), exec_id: str = "0000e0d5.00000001.01.01") -> IbFill:  # fmt: skip
    execution = Execution(execId=exec_id, time=at, side=side, shares=shares, price=price, orderRef=order_ref)
    report = CommissionReport(exec_id, commission, "USD") if commission is not None else CommissionReport()
    return IbFill(Stock("ABC", "SMART", "USD"), execution, report, at)


def test_a_market_on_open_entry_is_a_market_buy_for_the_opening_auction_carrying_our_id():
    contract, order = mapping.to_contract(ABC), mapping.to_ib_order(ENTRY, "DU1234567")

    assert (contract.secType, contract.symbol, contract.exchange, contract.currency) == ("STK", "ABC", "SMART", "USD")
    assert (order.action, order.totalQuantity, order.orderType, order.tif) == ("BUY", 100, "MKT", "OPG")
    assert (order.orderRef, order.account, order.ocaGroup) == ("ob-20250307-ABC-entry", "DU1234567", "")


def test_the_protective_pair_is_a_sell_limit_and_a_sell_stop_in_one_oca_group():
    target, stop = mapping.to_ib_order(TARGET), mapping.to_ib_order(STOP)

    assert (target.action, target.orderType, target.lmtPrice, target.tif) == ("SELL", "LMT", 51.30, "DAY")
    assert (stop.action, stop.orderType, stop.auxPrice, stop.tif) == ("SELL", "STP", 49.55, "DAY")
    assert target.ocaGroup == stop.ocaGroup == "ob-20250307-ABC-exit"
    assert target.ocaType == stop.ocaType == 1


def test_a_liquidation_is_a_market_sell_for_the_day():
    order = mapping.to_ib_order(EOD)

    assert (order.action, order.totalQuantity, order.orderType, order.tif, order.orderRef) == (
        "SELL", 100, "MKT", "DAY", "ob-20250307-ABC-eod"
    )  # fmt: skip


@pytest.mark.parametrize("intent", [ENTRY, TARGET, STOP, EOD, BE_TARGET, BE_STOP], ids=lambda i: i.purpose.value)
def test_every_order_we_send_reads_back_as_the_same_intent(intent):
    assert mapping.intent_from_ib(mapping.to_contract(intent.symbol), mapping.to_ib_order(intent)) == intent


@pytest.mark.parametrize(
    "order_ref",
    ["", "hedge-1", "ob-2025-ABC-entry", "ob-20250307-ABC-exit", "ob-20251399-ABC-entry", "OB-20250307-ABC-entry"],
)
def test_orders_without_our_order_ref_are_never_adopted(order_ref):
    order = mapping.to_ib_order(ENTRY)
    order.orderRef = order_ref

    assert mapping.intent_from_ib(mapping.to_contract(ABC), order) is None


def test_an_order_of_a_shape_we_never_send_is_not_adopted_even_with_our_id():
    order = mapping.to_ib_order(TARGET)
    order.orderType = "TRAIL"

    assert mapping.intent_from_ib(mapping.to_contract(ABC), order) is None


def test_our_id_is_taken_apart_into_day_symbol_and_purpose():
    assert mapping.parse_order_ref("ob-20250307-BRK B-stop") == mapping.OrderRef(DAY, Symbol("BRK B"), Purpose.STOP)
    assert mapping.parse_order_ref("ob-20250307-ABC-bestop") == mapping.OrderRef(DAY, ABC, Purpose.BE_STOP)


def test_a_break_even_stop_known_from_its_fills_alone_reads_back_as_a_stop():
    intent = mapping.intent_from_fills([mapping.to_fill(fill_of(BE_STOP.client_order_id, "SLD", 100, 50.0))])

    assert (intent.order_type, intent.purpose, intent.stop_price) == (OrderType.STOP, Purpose.BE_STOP, Decimal("50.00"))


@pytest.mark.parametrize(
    ("ib_status", "ours"),
    [("PendingSubmit", OrderStatus.NEW), ("ApiPending", OrderStatus.NEW), ("PreSubmitted", OrderStatus.NEW),
     ("Submitted", OrderStatus.NEW), ("PendingCancel", OrderStatus.NEW), ("ValidationError", OrderStatus.NEW),
     ("Filled", OrderStatus.FILLED), ("Cancelled", OrderStatus.CANCELLED), ("ApiCancelled", OrderStatus.CANCELLED),
     ("Inactive", OrderStatus.REJECTED)],
)  # fmt: skip
def test_ib_order_states_map_to_ours(ib_status, ours):
    assert mapping.to_status(ib_status) is ours


def test_an_order_ib_rejected_with_201_is_rejected_with_ibs_own_message():
    rejected = trade_of(ENTRY, "Inactive", log=((201, "Order rejected - reason:YOUR ORDER IS NOT ACCEPTED."),))

    order = mapping.to_order(ENTRY, rejected, [], SUBMITTED_AT)

    assert (order.status, order.reason) == (OrderStatus.REJECTED, "Order rejected - reason:YOUR ORDER IS NOT ACCEPTED.")
    assert mapping.order_error(rejected) == (201, "Order rejected - reason:YOUR ORDER IS NOT ACCEPTED.")


def test_a_rejection_ib_async_recorded_as_a_cancel_is_still_a_rejection():
    rejected = trade_of(ENTRY, "Cancelled", log=((201, "Order rejected - reason:no shares to short"),))

    assert mapping.to_order(ENTRY, rejected, [], SUBMITTED_AT).status is OrderStatus.REJECTED


def test_a_warning_before_the_open_leaves_the_order_working():
    warned = trade_of(ENTRY, "PreSubmitted", log=((399, "Warning: your order will not be placed until 09:30:00"),))

    assert mapping.to_order(ENTRY, warned, [], SUBMITTED_AT).status is OrderStatus.NEW
    assert mapping.order_error(warned) is None


def test_a_cancel_confirmation_is_a_cancel_not_a_rejection():
    cancelled = trade_of(TARGET, "Cancelled", log=((202, "Order Canceled - reason:"),))

    order = mapping.to_order(TARGET, cancelled, [], SUBMITTED_AT, cancel_requested=True)

    assert (order.status, order.reason) == (OrderStatus.CANCELLED, "cancelled by request")


def test_the_other_leg_of_an_oca_group_is_cancelled_by_the_fill():
    order = mapping.to_order(STOP, trade_of(STOP, "Cancelled"), [], SUBMITTED_AT)

    assert (order.status, order.reason) == (
        OrderStatus.CANCELLED,
        "one-cancels-other: another order of ob-20250307-ABC-exit filled",
    )


def test_a_market_on_open_order_ib_cancels_unfilled_has_expired():
    order = mapping.to_order(ENTRY, trade_of(ENTRY, "Cancelled"), [], SUBMITTED_AT)

    assert order.status is OrderStatus.EXPIRED


def test_executions_give_the_filled_shares_and_price_of_a_completed_order():
    completed = trade_of(ENTRY, "Filled")  # completed orders come without filled quantity or average price
    fills = [mapping.to_fill(fill_of(ENTRY.client_order_id, "BOT", 100, 50.0))]

    order = mapping.to_order(ENTRY, completed, fills, SUBMITTED_AT)

    assert (order.status, order.filled_qty, order.avg_fill_price, order.broker_order_id) == (
        OrderStatus.FILLED, 100, Decimal("50.0"), "900000001"
    )  # fmt: skip


def test_partial_fills_average_to_a_hundredth_of_a_cent_and_fill_the_order_when_complete():
    fills = [mapping.to_fill(fill_of(TARGET.client_order_id, "SLD", 30, 51.30, exec_id="e1")),
             mapping.to_fill(fill_of(TARGET.client_order_id, "SLD", 70, 51.31, exec_id="e2"))]  # fmt: skip

    order = mapping.to_order(TARGET, trade_of(TARGET, "Submitted"), fills, SUBMITTED_AT)

    assert (order.status, order.filled_qty, order.avg_fill_price) == (OrderStatus.FILLED, 100, Decimal("51.3070"))


def test_a_working_order_with_some_executions_is_partially_filled_and_still_open():
    fills = [mapping.to_fill(fill_of(ENTRY.client_order_id, "BOT", 40, 50.0))]

    order = mapping.to_order(ENTRY, trade_of(ENTRY, "Submitted"), fills, SUBMITTED_AT)

    assert (order.status, order.filled_qty, order.avg_fill_price) == (OrderStatus.PARTIALLY_FILLED, 40, Decimal("50.0"))
    assert order.is_open() and not order.is_done()


def test_a_partial_fill_ib_reports_in_the_order_status_alone_is_partially_filled():
    trade = trade_of(ENTRY, "Submitted")
    trade.orderStatus.filled, trade.orderStatus.remaining, trade.orderStatus.avgFillPrice = 40.0, 60.0, 50.0

    order = mapping.to_order(ENTRY, trade, [], SUBMITTED_AT)

    assert (order.status, order.filled_qty, order.avg_fill_price) == (OrderStatus.PARTIALLY_FILLED, 40, Decimal("50.0"))


def test_an_entry_cancelled_after_a_partial_fill_is_cancelled_with_its_shares_not_expired():
    fills = [mapping.to_fill(fill_of(ENTRY.client_order_id, "BOT", 40, 50.0))]

    order = mapping.to_order(ENTRY, trade_of(ENTRY, "Cancelled"), fills, SUBMITTED_AT, cancel_requested=True)

    assert (order.status, order.filled_qty, order.reason) == (OrderStatus.CANCELLED, 40, "cancelled by request")
    assert order.is_done()


def test_an_order_known_only_from_its_executions_is_rebuilt_from_them():
    fills = [mapping.to_fill(fill_of(ENTRY.client_order_id, "BOT", 100, 50.0))]

    intent = mapping.intent_from_fills(fills)
    order = mapping.to_order(intent, None, fills, SUBMITTED_AT)

    assert (intent.order_type, intent.tif, intent.qty, intent.side) == (OrderType.MARKET, TimeInForce.OPG, 100, Side.BUY)
    assert (order.status, order.avg_fill_price) == (OrderStatus.FILLED, Decimal("50.0"))


def test_an_ib_execution_becomes_our_fill_in_new_york_time_with_decimal_money():
    fill = mapping.to_fill(fill_of("ob-20250307-ABC-stop", "SLD", 100, 49.55, commission=1.0))

    assert fill == Fill("0000e0d5.00000001.01.01", ClientOrderId("ob-20250307-ABC-stop"), ABC, Side.SELL, 100,
                        Decimal("49.55"), Decimal("1.0"), datetime(2025, 3, 7, 9, 30, tzinfo=NY))  # fmt: skip
    assert fill.ts.tzinfo == NY


def test_a_fill_without_its_commission_report_says_so():
    raw = fill_of(ENTRY.client_order_id, "BOT", 100, 50.0, commission=None)

    assert not mapping.has_commission(raw)
    assert mapping.to_fill(raw).commission == 0


def test_stock_positions_map_and_other_instruments_or_flat_lines_do_not():
    assert mapping.to_position(IbPosition("DU1", Stock("IBM", "", "USD"), 100.0, 140.123456)) == Position(
        Symbol("IBM"), 100, Decimal("140.1235")
    )
    assert mapping.to_position(IbPosition("DU1", Stock("IBM", "", "USD"), 0.0, 0.0)) is None
    assert mapping.to_position(IbPosition("DU1", Option("IBM", "20250321", 150, "C"), 1.0, 3.0)) is None


def test_the_account_takes_net_liquidation_cash_and_buying_power_in_usd():
    values = [AccountValue("DU1", "NetLiquidation", "101000.50", "USD", ""), AccountValue("DU1", "NetLiquidation", "93000", "EUR", ""),
              AccountValue("DU1", "TotalCashValue", "90000", "BASE", ""), AccountValue("DU1", "BuyingPower", "404002", "USD", ""),
              AccountValue("DU1", "DayTradesRemaining", "1", "", ""), AccountValue("DU2", "NetLiquidation", "5", "USD", "")]  # fmt: skip

    account = mapping.to_account(values, "DU1")

    assert (account.equity, account.cash, account.buying_power) == (
        Decimal("101000.50"),
        Decimal("90000"),
        Decimal("404002"),
    )
    assert (account.paper, account.day_trade_count) == (True, 2)


def test_unlimited_day_trades_give_no_count_and_a_missing_value_is_an_error():
    values = [AccountValue("U1", tag, "1", "USD", "") for tag in mapping.ACCOUNT_TAGS]
    values.append(AccountValue("U1", "DayTradesRemaining", "-1", "", ""))

    assert (mapping.to_account(values, "U1").day_trade_count, mapping.to_account(values, "U1").paper) == (None, False)
    with pytest.raises(ValueError, match="no BuyingPower"):
        mapping.to_account(values[:2], "U1")


@pytest.mark.parametrize(
    ("code", "expected"),
    [(201, OrderRejected), (110, OrderRejected), (1100, TransientError), (100, TransientError), (162, TransientError),
     (326, ConfigError), (202, None), (1101, None), (1102, None), (2104, None), (399, None)],
)  # fmt: skip
def test_ib_error_codes_become_the_error_the_caller_should_act_on(code, expected):
    error = mapping.error_for(code, "IB's message", "ob-20250307-ABC-entry", client_id=17)

    assert (type(error) if error else None) is expected


def test_a_rejection_carries_ibs_code_and_reason():
    error = mapping.error_for(201, "Order rejected - reason:margin", "ob-20250307-ABC-entry")

    assert (error.client_order_id, error.code, error.reason) == (
        "ob-20250307-ABC-entry",
        201,
        "Order rejected - reason:margin",
    )


def test_client_id_in_use_says_which_id_and_how_to_fix_it():
    error = mapping.error_for(326, "Unable to connect as the client id is already in use.", client_id=17)

    assert "client id 17 is already in use" in str(error) and "OPENBELL_BROKER__IBKR__CLIENT_ID" in str(error)


def test_a_resent_order_must_match_the_one_ib_has_except_prices_of_a_done_one():
    wider = protective_exit(DAY, ABC, 100, Decimal("50.00"), ExitPolicy(target_pct=Decimal("3")))[0]

    assert mapping.differences(wider, TARGET) == ["limit_price"]
    assert mapping.differences(wider, TARGET, prices=False) == []
    assert mapping.differences(liquidation(DAY, ABC, 50), EOD, prices=False) == ["qty"]


# --- trailing stops ------------------------------------------------------------------------------
def test_a_trailing_stop_in_percent_becomes_a_trail_order_from_its_starting_level():
    _, stop = protective_exit(DAY, ABC, 100, Decimal("50.00"), ExitPolicy(trail_pct=Decimal("1.5")))

    order = mapping.to_ib_order(stop)

    assert (order.orderType, order.action, order.totalQuantity, order.trailingPercent, order.trailStopPrice) == (
        "TRAIL",
        "SELL",
        100,
        1.5,
        49.55,
    )
    assert (order.orderRef, order.ocaGroup, order.ocaType, order.tif) == (stop.client_order_id, stop.oco_group, 1, "DAY")


def test_a_trailing_stop_in_dollars_becomes_a_trail_order_with_the_amount_as_aux_price():
    policy = ExitPolicy(trail_atr=Decimal(2))
    _, stop = protective_exit(DAY, ABC, 100, Decimal("50.00"), policy, atr=Decimal("0.40"))

    order = mapping.to_ib_order(stop)

    assert (order.orderType, order.auxPrice, order.trailStopPrice) == ("TRAIL", 0.8, 49.55)


def test_a_trail_order_reported_by_ib_maps_back_to_the_trailing_stop():
    _, stop = protective_exit(DAY, ABC, 100, Decimal("50.00"), ExitPolicy(trail_pct=Decimal("1.5")))
    reported = mapping.to_ib_order(stop)
    reported.trailStopPrice = 49.80  # IB raises it as the price rises

    intent = mapping.intent_from_ib(Stock("ABC", "SMART", "USD"), reported)

    assert (intent.order_type, intent.trail_percent, intent.trail_amount) == (OrderType.TRAILING_STOP, Decimal("1.5"), None)
    assert mapping.differences(stop, intent) == []
