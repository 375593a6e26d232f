"""The Alpaca adapter end to end: the real alpaca-py TradingClient over a loopback socket to the fake Alpaca."""

from __future__ import annotations

import logging
import pickle
import time
from decimal import Decimal

import pytest

from openbell.core.exits import ExitPolicy
from openbell.core.orders import liquidation, moo_entry, protective_exit
from openbell.core.types import (
    ClientOrderId,
    Order,
    OrderIntent,
    OrderStatus,
    OrderType,
    Position,
    Purpose,
    Side,
    Symbol,
)
from openbell.errors import ConfigError, OrderRejected, TransientError
from openbell.store.ledger import opened_quantities
from openbell.venues.alpaca import AlpacaBroker
from tests.adapters.alpaca.alpaca_support import API_KEY, DAY, FAST, SECRET_KEY, alpaca_settings, at

ABC, XYZ = Symbol("ABC"), Symbol("XYZ")
ENTRY, TARGET, STOP, EOD = (ClientOrderId(f"ob-20250307-ABC-{p}") for p in ("entry", "target", "stop", "eod"))


def entry(symbol: Symbol = ABC, shares: int = 100) -> OrderIntent:
    return moo_entry(DAY, symbol, shares)


def exits_for(filled: Order) -> tuple[OrderIntent, OrderIntent]:
    return protective_exit(DAY, filled.intent.symbol, filled.filled_qty, filled.avg_fill_price, ExitPolicy())


def posts(fake) -> int:
    return fake.requests.count("POST /v2/orders")


def filled_entry(broker, fake, clock, price: str = "50.00") -> Order:
    """An entry sent at 09:00 and filled in the opening auction at `price`."""
    broker.submit(entry())
    clock.sleep_until(at("09:30"))
    fake.fill(ENTRY, price)
    return broker.order(ENTRY)


def protected_entry(broker, fake, clock) -> tuple[Order, Order]:
    return broker.submit_oco(*exits_for(filled_entry(broker, fake, clock)))


# --- a day's orders --------------------------------------------------------------------------
def test_moo_entry_fills_then_oco_exits_and_the_stop_filling_cancels_the_target(broker, fake, clock):
    sent = broker.submit(entry())
    assert (sent.status, sent.intent) == (OrderStatus.NEW, entry())

    clock.sleep_until(at("09:30"))
    fake.fill(ENTRY, "50.00")
    filled = broker.order(ENTRY)
    assert (filled.status, filled.filled_qty, filled.avg_fill_price) == (OrderStatus.FILLED, 100, Decimal("50.00"))

    target, stop = broker.submit_oco(*exits_for(filled))
    assert (target.client_order_id, target.intent.limit_price, target.status) == (TARGET, Decimal("51.30"), OrderStatus.NEW)
    assert (stop.client_order_id, stop.intent.stop_price, stop.status) == (STOP, Decimal("49.55"), OrderStatus.NEW)
    assert {o.client_order_id for o in broker.open_orders()} == {TARGET, STOP}

    clock.sleep_until(at("10:12"))
    fake.fill_stop_leg(TARGET, "49.55")
    assert broker.order(STOP).status is OrderStatus.FILLED
    assert broker.order(TARGET).status is OrderStatus.CANCELLED
    assert broker.order(TARGET).reason == "one-cancels-other: ob-20250307-ABC-stop filled"
    assert broker.open_orders() == []
    fills = broker.fills_since(None)
    assert [(f.client_order_id, f.side, f.qty, f.price, f.ts) for f in fills] == [
        (ENTRY, Side.BUY, 100, Decimal("50.00"), at("09:30")),
        (STOP, Side.SELL, 100, Decimal("49.55"), at("10:12")),
    ]
    assert broker.fills_since(at("10:00")) == fills[1:]
    assert broker.positions() == {}


def test_the_target_filling_cancels_the_stop(broker, fake, clock):
    protected_entry(broker, fake, clock)
    clock.sleep_until(at("09:41"))

    fake.fill(TARGET, "51.30")

    assert broker.order(TARGET).status is OrderStatus.FILLED
    assert (broker.order(STOP).status, broker.order(STOP).reason) == (
        OrderStatus.CANCELLED, "one-cancels-other: ob-20250307-ABC-target filled"
    )  # fmt: skip
    assert [f.client_order_id for f in broker.fills_since()] == [ENTRY, TARGET]


def test_an_opening_order_without_an_opening_print_expires(broker, fake, clock):
    broker.submit(entry())
    clock.sleep_until(at("09:31"))

    fake.expire(ENTRY)

    expired = broker.order(ENTRY)
    assert expired.status is OrderStatus.EXPIRED and "no opening print" in expired.reason
    assert broker.fills_since() == []


def test_a_partial_fill_is_reported_once_it_is_final(broker, fake, clock):
    broker.submit(entry())
    clock.sleep_until(at("09:30"))

    fake.fill(ENTRY, "50.00", qty=40)
    working = broker.order(ENTRY)
    partial_fills = broker.fills_since()
    fake.fill(ENTRY, "50.10")

    assert (working.status, working.filled_qty, working.is_open()) == (OrderStatus.PARTIALLY_FILLED, 40, True)
    assert partial_fills == []
    [fill] = broker.fills_since()
    assert (fill.qty, fill.price) == (100, Decimal("50.06"))


def test_cancelling_the_stop_cancels_the_pair_and_a_done_order_comes_back_as_it_is(broker, fake, clock):
    protected_entry(broker, fake, clock)

    cancelled = broker.cancel(STOP)
    again = broker.cancel(TARGET)

    assert cancelled.status is OrderStatus.CANCELLED
    assert again.status is OrderStatus.CANCELLED
    assert [r for r in fake.requests if r.startswith("DELETE")] == [f"DELETE /v2/orders/{again.broker_order_id}"]


def test_shares_held_by_working_exits_cannot_be_sold_until_the_exits_are_cancelled(broker, fake, clock):
    protected_entry(broker, fake, clock)
    clock.sleep_until(at("15:45"))

    with pytest.raises(OrderRejected) as held:
        broker.submit(liquidation(DAY, ABC, 100))
    broker.cancel(TARGET)
    sold = broker.submit(liquidation(DAY, ABC, 100))
    fake.fill(EOD, "50.40")

    assert held.value.code == 40310000 and "insufficient qty available" in held.value.reason
    assert sold.status is OrderStatus.NEW
    assert broker.positions() == {}


# --- idempotency -----------------------------------------------------------------------------
def test_a_resubmitted_entry_returns_the_order_alpaca_already_has(broker, fake):
    first = broker.submit(entry())

    second = broker.submit(entry())

    assert second == first
    assert len(fake.orders_with_client_id(ENTRY)) == 1 and posts(fake) == 1


def test_a_resubmitted_oco_pair_returns_the_pair_alpaca_already_has(broker, fake, clock):
    pair = protected_entry(broker, fake, clock)

    again = broker.submit_oco(*exits_for(broker.order(ENTRY)))

    assert again == pair
    assert fake.order_count() == 2 and posts(fake) == 2  # the entry and one oco order (with its leg)


def test_a_different_order_under_a_used_id_is_rejected(broker, fake):
    broker.submit(entry(shares=100))

    with pytest.raises(OrderRejected, match="already used at Alpaca for a different order"):
        broker.submit(entry(shares=200))
    assert posts(fake) == 1


def test_an_answer_lost_to_a_timeout_after_alpaca_accepted_gives_that_order_and_no_duplicate(broker, fake):
    fake.answer_next_order_late(1.5)  # stored at once, answered after the client's 0.5 s timeout

    order = broker.submit(entry())
    retried = broker.submit(entry())

    assert order.status is OrderStatus.NEW and retried == order
    assert len(fake.orders_with_client_id(ENTRY)) == 1 and posts(fake) == 1


def test_an_order_accepted_after_the_timeout_is_transient_and_the_retry_finds_it(broker, fake):
    fake.answer_next_order_late(1.5, accept_first=False)  # not there when the adapter looks it up

    with pytest.raises(TransientError, match="retrying is safe"):
        broker.submit(entry())
    deadline = time.monotonic() + 5
    while not fake.orders_with_client_id(ENTRY) and time.monotonic() < deadline:
        time.sleep(0.05)
    retried = broker.submit(entry())

    assert retried.status is OrderStatus.NEW
    assert len(fake.orders_with_client_id(ENTRY)) == 1 and posts(fake) == 1


def test_a_gateway_timeout_that_alpaca_py_retries_creates_no_second_order(broker, fake):
    fake.gateway_timeout_next_order()  # stored, then 504: alpaca-py POSTs again and gets "must be unique"

    order = broker.submit(entry())

    assert order.status is OrderStatus.NEW
    assert posts(fake) == 2 and len(fake.orders_with_client_id(ENTRY)) == 1


# --- rejections and guards -------------------------------------------------------------------
def test_a_pattern_day_trading_refusal_surfaces_as_order_rejected_with_alpacas_reason(broker, fake):
    fake.reject_next_order(403, 40310100, "trade denied due to pattern day trading protection")

    with pytest.raises(OrderRejected) as rejected:
        broker.submit(entry())

    assert (rejected.value.code, rejected.value.reason) == (40310100, "trade denied due to pattern day trading protection")
    assert fake.orders_with_client_id(ENTRY) == []


def test_a_price_alpaca_cannot_take_is_rejected_with_its_422_message(broker, fake):
    odd = OrderIntent(EOD, ABC, Side.SELL, 100, OrderType.LIMIT, Purpose.EOD, limit_price=Decimal("50.123"))

    with pytest.raises(OrderRejected, match="sub-penny increment") as rejected:
        broker.submit(odd)
    assert rejected.value.code == 40010001


def test_a_market_on_open_order_after_0928_is_refused_without_calling_alpaca(broker, fake, clock):
    clock.sleep_until(at("09:29"))

    with pytest.raises(OrderRejected, match="from 2025-03-06 19:00 to 09:28 New York time"):
        broker.submit(entry())
    assert posts(fake) == 0


def test_the_market_on_open_window_runs_from_1900_the_session_before(broker):
    window = broker.moo_window(DAY)

    assert (window.opens, window.cutoff) == (at("19:00", day=DAY.replace(day=6)), at("09:28"))


def test_a_day_order_after_the_close_is_refused_so_alpaca_cannot_keep_it_for_tomorrow(broker, fake, clock):
    clock.sleep_until(at("16:00"))

    with pytest.raises(OrderRejected, match="session has closed"):
        broker.submit(liquidation(DAY, ABC, 10))
    assert posts(fake) == 0


def test_orders_of_another_day_or_of_anyone_else_are_not_acted_on(broker, fake):
    fake.place({"symbol": "MSFT", "qty": "5", "side": "buy", "type": "market", "time_in_force": "day",
                "client_order_id": "manual-1"})  # fmt: skip

    assert broker.order(ClientOrderId("manual-1")) is None
    with pytest.raises(OrderRejected, match="acts only on its own orders"):
        broker.cancel(ClientOrderId("manual-1"))
    with pytest.raises(OrderRejected, match="acts only on its own orders"):
        broker.submit(moo_entry(DAY.replace(day=10), ABC, 1))
    assert broker.open_orders() == [] and posts(fake) == 0


# --- outages and restarts --------------------------------------------------------------------
def test_a_rate_limited_read_is_retried_by_alpaca_py(broker, fake):
    fake.rate_limit(1, "GET")

    account = broker.account()

    assert account.equity == Decimal(100_000) and account.paper
    assert fake.requests.count("GET /v2/account") == 2


def test_a_rate_limit_that_outlasts_the_retries_is_transient(broker, fake):
    fake.rate_limit(10, "GET")

    with pytest.raises(TransientError, match="HTTP 429"):
        broker.positions()


def test_server_down_mid_day_is_transient_and_a_new_adapter_recovers_the_day(broker, fake, clock, connect):
    protected_entry(broker, fake, clock)
    clock.sleep_until(at("11:00"))
    fake.stop()

    for read in (broker.open_orders, broker.fills_since, broker.positions, broker.account, lambda: broker.order(TARGET)):
        with pytest.raises(TransientError, match="connection refused"):
            read()
    with pytest.raises(TransientError):
        broker.submit(liquidation(DAY, ABC, 100))
    fake.start()
    fresh = connect()

    assert {o.client_order_id for o in fresh.open_orders()} == {TARGET, STOP}
    assert [(f.client_order_id, f.qty) for f in fresh.fills_since()] == [(ENTRY, 100)]
    assert fresh.order(ENTRY).status is OrderStatus.FILLED


def test_a_restart_adopts_our_orders_and_positions_and_leaves_other_holdings_alone(broker, fake, clock, connect):
    fake.hold("MSFT", 30, Decimal("410.10"))  # bought outside openbell
    fake.place({"symbol": "MSFT", "qty": "30", "side": "sell", "type": "limit", "limit_price": "450",
                "time_in_force": "day", "client_order_id": "web-ui-sell"})  # fmt: skip
    fake.place({"symbol": "ABC", "qty": "7", "side": "buy", "type": "market", "time_in_force": "opg",
                "client_order_id": "ob-20250306-ABC-entry"})  # yesterday's id, still open  # fmt: skip
    broker.submit(entry(XYZ, 20))  # not filled yet
    protected_entry(broker, fake, clock)

    restarted = connect()
    fills = restarted.fills_since()

    assert {o.client_order_id for o in restarted.open_orders()} == {"ob-20250307-XYZ-entry", TARGET, STOP}
    assert restarted.positions() == {
        ABC: Position(ABC, 100, Decimal("50.00")),
        Symbol("MSFT"): Position(Symbol("MSFT"), 30, Decimal("410.10")),
    }
    assert opened_quantities(fills) == {ABC: 100}  # what the flows flatten: not the MSFT holding


# --- configuration and secrets ---------------------------------------------------------------
def test_live_mode_without_confirmation_is_refused(fake, clock):
    with pytest.raises(ConfigError, match="OPENBELL_LIVE_CONFIRMATION"):
        AlpacaBroker(alpaca_settings(fake.url, live=True), clock, DAY, **FAST)


def test_live_mode_confirmed_trades_the_live_account(fake, clock):
    broker = AlpacaBroker(alpaca_settings(fake.url, live=True, confirmed=True), clock, DAY, **FAST)

    assert broker.account().paper is False
    assert "LIVE" in repr(broker)
    broker.close()


@pytest.mark.parametrize(
    ("missing", "named"),
    [({"api_key": None}, "OPENBELL_BROKER__ALPACA__API_KEY"), ({"secret_key": None}, "OPENBELL_BROKER__ALPACA__SECRET_KEY")],
)
def test_missing_keys_name_the_environment_variable_to_set(fake, clock, missing, named):
    with pytest.raises(ConfigError, match=named):
        AlpacaBroker(alpaca_settings(fake.url, **missing), clock, DAY)


def test_keys_alpaca_refuses_are_a_config_error(fake, clock):
    fake.secret_key = "rotated"
    broker = AlpacaBroker(alpaca_settings(fake.url), clock, DAY, **FAST)

    with pytest.raises(ConfigError, match="refused the API keys"):
        broker.account()
    broker.close()


def test_secrets_appear_nowhere_in_reprs_errors_or_logs(broker, fake, clock, caplog):
    caplog.set_level(logging.DEBUG)
    errors: list[BaseException] = []
    fake.reject_next_order()
    fake.answer_next_order_late(1.0, accept_first=False)
    for attempt in (lambda: broker.submit(entry()), lambda: broker.submit(entry()), fake.stop, broker.account):
        try:
            attempt()
        except Exception as error:  # every error the adapter raises is checked below
            errors.append(error)
    fake.secret_key = "rotated"
    fake.start()
    try:
        broker.positions()
    except ConfigError as error:
        errors.append(error)

    assert [type(e) for e in errors] == [OrderRejected, TransientError, TransientError, ConfigError]
    texts = [repr(broker), str(broker), caplog.text]
    for error in errors:
        chain = [error, error.__cause__, error.__context__]
        texts += [str(e) for e in chain] + [repr(e) for e in chain] + [pickle.dumps(error).decode("latin-1")]
    leaks = [t for t in texts if API_KEY in t or SECRET_KEY in t]
    assert leaks == []
    assert all(e.__cause__ is None and e.__context__ is None for e in errors)
