"""The Interactive Brokers adapter end to end: the real ib_async client over a real socket to a fake TWS."""

from __future__ import annotations

import socket
import threading
import time
from decimal import Decimal

import pytest

from openbell.core.exits import ExitPolicy
from openbell.core.orders import moo_entry, protective_exit
from openbell.core.types import OrderStatus, Position, Purpose, Side, Symbol, client_order_id
from openbell.errors import ConfigError, OrderRejected, TransientError
from openbell.venues.ibkr import IbkrBroker, api_ports
from tests.adapters.ibkr.ibkr_support import DAY, IBM_HOLDING, at, eventually

CLIENT_ID = 17
ABC = Symbol("ABC")
POLICY = ExitPolicy()  # +2.6% / -0.9%: from a 50.00 entry, target 51.30 and stop 49.55
ENTRY_ID = client_order_id(DAY, ABC, Purpose.ENTRY)
TARGET_ID = client_order_id(DAY, ABC, Purpose.TARGET)
STOP_ID = client_order_id(DAY, ABC, Purpose.STOP)


def status_of(broker, client_order_id):
    order = broker.order(client_order_id)
    return order.status if order else None


def enter_and_protect(broker, tws, clock):
    """MOO entry for 100 ABC at 09:20, filled at 50.00 at the open, then its target/stop pair."""
    broker.submit(moo_entry(DAY, ABC, 100))
    clock.sleep_until(at("09:30"))
    tws.fill(ENTRY_ID, "50.00")
    entry = eventually(lambda: (o := broker.order(ENTRY_ID)).status is OrderStatus.FILLED and o)
    clock.sleep_until(at("09:31"))
    target, stop = broker.submit_oco(*protective_exit(DAY, ABC, entry.filled_qty, entry.avg_fill_price, POLICY))
    return entry, target, stop


def test_moo_entry_fills_then_the_oca_exits_go_in_and_the_target_fill_cancels_the_stop(tws, connect, clock):
    broker = connect()

    entry = broker.submit(moo_entry(DAY, ABC, 100))
    assert entry.status is OrderStatus.NEW and entry.broker_order_id.isdigit()
    (sent,) = tws.orders_with_ref(ENTRY_ID)
    assert (sent.action, sent.qty, sent.order_type, sent.tif, sent.account) == ("BUY", 100, "MKT", "OPG", "DU1234567")

    clock.sleep_until(at("09:30"))
    tws.fill(ENTRY_ID, "50.00")
    entry = eventually(lambda: (o := broker.order(ENTRY_ID)).status is OrderStatus.FILLED and o)
    assert (entry.filled_qty, entry.avg_fill_price) == (100, Decimal("50.00"))

    target, stop = broker.submit_oco(*protective_exit(DAY, ABC, 100, entry.avg_fill_price, POLICY))
    assert (target.status, stop.status) == (OrderStatus.NEW, OrderStatus.NEW)
    (limit,), (stop_order,) = tws.orders_with_ref(TARGET_ID), tws.orders_with_ref(STOP_ID)
    assert (limit.order_type, Decimal(limit.lmt_price), limit.action, limit.tif) == ("LMT", Decimal("51.30"), "SELL", "DAY")
    assert (stop_order.order_type, Decimal(stop_order.aux_price)) == ("STP", Decimal("49.55"))
    assert limit.oca_group == stop_order.oca_group == "ob-20250307-ABC-exit"
    assert limit.oca_type == stop_order.oca_type == 1

    clock.sleep_until(at("10:05"))
    tws.fill(TARGET_ID, "51.30")
    eventually(lambda: status_of(broker, STOP_ID) is OrderStatus.CANCELLED)

    assert broker.order(TARGET_ID).status is OrderStatus.FILLED
    assert broker.order(STOP_ID).reason.startswith("one-cancels-other")
    assert broker.open_orders() == []
    fills = broker.fills_since(None)
    assert [(f.client_order_id, f.side, f.qty, f.price, f.commission, f.ts) for f in fills] == [
        (ENTRY_ID, Side.BUY, 100, Decimal("50.00"), Decimal("1.00"), at("09:30")),
        (TARGET_ID, Side.SELL, 100, Decimal("51.30"), Decimal("1.00"), at("10:05")),
    ]
    assert broker.fills_since(at("10:00")) == fills[1:]
    assert broker.positions() == {Symbol("IBM"): IBM_HOLDING}


def test_an_order_whose_answer_never_came_is_found_by_order_ref_and_a_retry_sends_no_second(tws, connect):
    broker = connect()
    tws.silence_next_order()  # TWS takes the order but its answer is lost

    first = broker.submit(moo_entry(DAY, ABC, 100))
    again = broker.submit(moo_entry(DAY, ABC, 100))

    assert first.status is OrderStatus.NEW
    assert again.broker_order_id == first.broker_order_id == str(tws.orders_with_ref(ENTRY_ID)[0].perm_id)
    assert tws.place_requests.count(ENTRY_ID) == 1


def test_a_connection_lost_right_after_placing_recovers_the_order_without_a_duplicate(tws, connect):
    broker = connect()
    tws.drop_after_next_order()

    first = broker.submit(moo_entry(DAY, ABC, 100))
    again = broker.submit(moo_entry(DAY, ABC, 100))

    assert first.status is OrderStatus.NEW and again.broker_order_id == first.broker_order_id
    assert tws.place_requests.count(ENTRY_ID) == 1 and tws.connections == 2


def test_an_order_tws_never_received_is_reported_unplaced_and_the_retry_places_it_once(tws, connect):
    broker = connect()
    tws.lose_next_order()

    with pytest.raises(TransientError, match="was not placed"):
        broker.submit(moo_entry(DAY, ABC, 100))
    assert broker.order(ENTRY_ID) is None
    placed = broker.submit(moo_entry(DAY, ABC, 100))

    assert placed.status is OrderStatus.NEW
    (kept,) = tws.orders_with_ref(ENTRY_ID)
    ((client, cancelled_id),) = tws.cancel_requests  # the lost order id, in case its request was only delayed
    assert client == CLIENT_ID and cancelled_id < kept.order_id


def test_a_201_rejection_raises_order_rejected_with_ibs_reason_and_is_never_resent(tws, connect):
    broker = connect()
    tws.reject_next("ABC", "YOUR ORDER IS NOT ACCEPTED. IN ORDER TO OBTAIN THE DESIRED POSITION YOUR EQUITY MUST BE")

    with pytest.raises(OrderRejected) as rejected:
        broker.submit(moo_entry(DAY, ABC, 100))

    assert rejected.value.code == 201
    assert rejected.value.reason.startswith("Order rejected - reason:YOUR ORDER IS NOT ACCEPTED")
    assert broker.order(ENTRY_ID).status is OrderStatus.REJECTED
    with pytest.raises(OrderRejected, match="NOT ACCEPTED"):
        broker.submit(moo_entry(DAY, ABC, 100))
    assert tws.place_requests.count(ENTRY_ID) == 1


def test_a_dropped_connection_mid_day_reconnects_and_recovers_what_happened_meanwhile(tws, connect, clock):
    broker = connect()
    enter_and_protect(broker, tws, clock)

    tws.drop_connections()
    clock.sleep_until(at("11:00"))
    tws.fill(STOP_ID, "49.55")  # while the adapter is disconnected; TWS cancels the target (OCA)

    assert eventually(lambda: status_of(broker, STOP_ID) is OrderStatus.FILLED)
    assert tws.connections == 2
    target = broker.order(TARGET_ID)
    assert target.status is OrderStatus.CANCELLED and target.reason.startswith("one-cancels-other")
    assert [(f.client_order_id, f.price, f.commission) for f in broker.fills_since(at("10:00"))] == [
        (STOP_ID, Decimal("49.55"), Decimal("1.00"))
    ]
    assert broker.positions() == {Symbol("IBM"): IBM_HOLDING}
    assert broker.open_orders() == []
    assert tws.contract_requests == ["ABC", "ABC"]  # qualified again after the reconnect


def test_while_tws_is_down_calls_are_transient_errors_and_at_its_restart_the_fill_meanwhile_is_found(tws, connect, clock):
    broker = connect(request_timeout_s=1.0)
    enter_and_protect(broker, tws, clock)

    tws.go_away()  # connects refused on its port
    clock.sleep_until(at("11:00"))
    tws.fill(STOP_ID, "49.55")  # IB's servers fill it while TWS is down
    with pytest.raises(TransientError, match="not connected"):
        broker.day_orders()
    tws.come_back()

    assert eventually(lambda: status_of(broker, STOP_ID) is OrderStatus.FILLED)
    assert status_of(broker, TARGET_ID) is OrderStatus.CANCELLED
    assert tws.connections == 2 and tws.clients() == [CLIENT_ID]
    assert broker.positions() == {Symbol("IBM"): IBM_HOLDING}
    assert tws.place_requests == [ENTRY_ID, TARGET_ID, STOP_ID]


def test_a_read_tws_does_not_answer_is_a_transient_error_not_the_book_from_before(tws, connect, clock):
    broker = connect(request_timeout_s=1.0)
    enter_and_protect(broker, tws, clock)

    tws.hang()  # the socket stays open: ib_async sees no disconnect
    started = time.monotonic()
    with pytest.raises(TransientError, match="did not answer"):
        broker.day_orders()
    waited = time.monotonic() - started
    tws.resume()

    assert 1.0 <= waited < 3.0
    assert status_of(broker, STOP_ID) is OrderStatus.NEW  # answered again once TWS is


def test_a_request_cut_by_tws_going_away_is_a_transient_error_so_the_task_is_retried(tws, connect):
    broker = connect(request_timeout_s=1.0)
    tws.hang()  # the positions request stays unanswered until the socket closes under it
    going_away = threading.Timer(0.3, tws.go_away)
    going_away.start()

    with pytest.raises(TransientError, match="dropped"):
        broker.positions()
    going_away.join()
    tws.come_back()

    assert eventually(lambda: broker.positions() == {Symbol("IBM"): IBM_HOLDING})


def test_a_restart_with_the_same_client_id_adopts_our_orders_and_leaves_the_rest_alone(tws, connect, clock):
    manual = tws.add_order(client_id=CLIENT_ID, symbol="IBM", action="SELL", qty=100, lmt_price="150", order_ref="")
    other = tws.add_order(client_id=5, symbol="XYZ", action="BUY", qty=10, lmt_price="20", order_ref="hedge-1")
    first = connect()
    entry, target, stop = enter_and_protect(first, tws, clock)
    first.close()

    second = connect()

    assert {o.client_order_id: o.intent for o in second.open_orders()} == {TARGET_ID: target.intent, STOP_ID: stop.intent}
    recovered = second.order(ENTRY_ID)
    assert (recovered.status, recovered.filled_qty, recovered.avg_fill_price) == (OrderStatus.FILLED, 100, Decimal("50"))
    assert recovered.intent == entry.intent
    assert [(f.client_order_id, f.qty, f.commission) for f in second.fills_since(None)] == [(ENTRY_ID, 100, Decimal("1.00"))]
    assert second.positions() == {ABC: Position(ABC, 100, Decimal("50.0000")), Symbol("IBM"): IBM_HOLDING}
    assert second.submit_oco(target.intent, stop.intent) == (second.order(TARGET_ID), second.order(STOP_ID))
    assert tws.place_requests == [ENTRY_ID, TARGET_ID, STOP_ID]

    cancelled = second.cancel(TARGET_ID)

    assert cancelled.status is OrderStatus.CANCELLED and cancelled.reason == "cancelled by request"
    assert manual.status == other.status == "Submitted"  # not ours: never touched


def test_a_pacing_refusal_is_transient_and_the_retry_places_the_order_once(tws, connect):
    broker = connect()
    tws.reject_next("ABC", "Max rate of messages per second has been exceeded:max=50 rec=51 (1)", code=100)

    with pytest.raises(TransientError, match="was not placed"):
        broker.submit(moo_entry(DAY, ABC, 100))
    placed = broker.submit(moo_entry(DAY, ABC, 100))

    assert placed.status is OrderStatus.NEW and len(tws.orders_with_ref(ENTRY_ID)) == 1


def test_no_order_goes_out_while_tws_has_lost_ib_and_orders_resume_when_it_is_back(tws, connect):
    broker = connect()

    tws.notify(1100, "Connectivity between IB and Trader Workstation has been lost.")
    broker.positions()  # a request answered after the notice: the socket delivers in order
    with pytest.raises(TransientError, match="lost its connection to Interactive Brokers"):
        broker.submit(moo_entry(DAY, ABC, 100))
    tws.notify(1102, "Connectivity between IB and Trader Workstation has been restored - data maintained.")
    broker.positions()

    assert broker.submit(moo_entry(DAY, ABC, 100)).status is OrderStatus.NEW
    assert tws.place_requests == [ENTRY_ID]


def test_an_unreachable_tws_is_a_transient_error_after_the_retries(clock, settings_for):
    with socket.create_server(("127.0.0.1", 0)) as spare:
        closed_port = spare.getsockname()[1]

    with pytest.raises(TransientError, match="could not connect to TWS/IB Gateway"):
        IbkrBroker(settings_for(closed_port), clock, DAY, connect_attempts=2, reconnect_delays_s=(0.1,))


def test_client_id_in_use_is_a_configuration_error_not_a_timeout(tws, connect):
    connect()
    started = time.monotonic()

    with pytest.raises(ConfigError, match=f"client id {CLIENT_ID} is already in use"):
        connect(client_id_wait_s=0.3)
    assert time.monotonic() - started < 2.0  # the connect timeout alone is 2 s per attempt


def test_a_start_waits_for_an_earlier_run_with_the_same_client_id_to_let_go(tws, connect):
    earlier = connect()
    threading.Timer(0.3, earlier.close).start()

    later = connect(client_id_wait_s=5.0)

    assert later.open_orders() == [] and tws.clients() == [CLIENT_ID]


def test_live_trading_without_confirmation_never_connects(tws, clock, settings_for):
    settings = settings_for(tws.port, trading_mode="live")

    with pytest.raises(ConfigError, match="OPENBELL_LIVE_CONFIRMATION"):
        IbkrBroker(settings, clock, DAY)
    assert tws.connections == 0


@pytest.mark.parametrize("port", [7496, 4001])
def test_a_live_port_is_refused_while_trading_paper(clock, settings_for, port):
    with pytest.raises(ConfigError, match=f"PORT={port} is where TWS/IB Gateway trades a live account"):
        IbkrBroker(settings_for(port), clock, DAY)


def test_default_ports_are_the_paper_ones_and_the_live_ones_need_confirmation(settings_for):
    paper = settings_for(None)
    live = settings_for(None, trading_mode="live", live_confirmation="I understand this trades real money")

    assert api_ports(paper) == (7497, 4002)
    assert api_ports(live) == (7496, 4001)


def test_a_live_account_behind_a_paper_setup_is_refused(make_tws, connect):
    live_login = make_tws(accounts=("U7654321",))

    with pytest.raises(ConfigError, match="U7654321 is a live account"):
        connect(server=live_login)


def test_market_on_open_orders_after_the_0928_cutoff_are_refused_without_reaching_tws(tws, connect, clock):
    broker = connect()
    clock.sleep_until(at("09:29"))

    with pytest.raises(OrderRejected, match="to 09:28 New York time"):
        broker.submit(moo_entry(DAY, ABC, 100))
    assert tws.place_requests == []


def test_a_symbol_ib_does_not_know_is_rejected_with_code_200(tws, connect):
    broker = connect()

    with pytest.raises(OrderRejected) as rejected:
        broker.submit(moo_entry(DAY, Symbol("NOPE"), 10))
    assert rejected.value.code == 200 and tws.place_requests == []


def test_the_account_comes_from_ibs_account_values(connect):
    account = connect().account()

    assert (account.equity, account.cash, account.buying_power) == (Decimal("100000.00"), Decimal("100000.00"),
                                                                     Decimal("400000.00"))  # fmt: skip
    assert account.paper is True and account.day_trade_count == 0


def test_the_account_falls_back_to_the_account_summary_when_updates_carry_no_values(make_tws, connect):
    summary_only = make_tws(account_updates=False)

    account = connect(server=summary_only).account()

    assert (account.equity, account.buying_power) == (Decimal("100000.00"), Decimal("400000.00"))
