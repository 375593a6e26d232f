"""The exit monitor against the fake TWS: a refused pair is held by the monitor, the others stay protected at IB;
TWS going away for a minute is waited out, and a stop crossed meanwhile is sold at the reconnect."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from openbell.core.exits import ExitPolicy
from openbell.core.orders import moo_entry
from openbell.core.types import OrderStatus, OrderType, Purpose, Side, Symbol, client_order_id
from openbell.monitor import ExitMonitor
from openbell.store import Store
from openbell.store.ledger import record_orders
from openbell.tasks.intraday import _sell_what_we_opened
from openbell.tasks.runs import RunContext
from tests.adapters.ibkr.ibkr_support import DAY, IBM_HOLDING, at, eventually
from tests.fakes.scripted_market import ScriptedMarket


def _id(symbol: str, purpose: Purpose):
    return client_order_id(DAY, symbol, purpose)


def test_a_refused_pair_at_ib_is_held_by_the_monitor_until_its_stop_then_the_day_ends_flat(
    connect, tws, clock, settings_for, tmp_path
):
    broker = connect()
    store = Store(tmp_path / "ob.ducklake")
    store.migrate()
    record_orders(store, DAY, [broker.submit(moo_entry(DAY, Symbol(s), 100)) for s in ("ABC", "XYZ")])
    clock.sleep_until(at("09:30"))
    for s in ("ABC", "XYZ"):
        tws.fill(_id(s, Purpose.ENTRY), "50.00")
    eventually(lambda: all(broker.order(_id(s, Purpose.ENTRY)).status is OrderStatus.FILLED for s in ("ABC", "XYZ")))
    tws.reject_next("XYZ", "YOUR ORDER IS NOT ACCEPTED. IN ORDER TO OBTAIN THE DESIRED POSITION YOUR EQUITY MUST BE")
    market = ScriptedMarket(DAY, {"ABC": 50.0, "XYZ": 50.0}, at("09:30"), at("16:00"))
    market.set_bar("XYZ", at("09:41"), 49.90, 49.95, 49.40, 49.50)  # through the 49.55 stop
    monitor = ExitMonitor(store, broker, market, DAY, ExitPolicy(), run_id="run-1")

    while clock.now() < at("09:45"):
        monitor.tick(clock.now())
        clock.sleep_until(clock.now() + timedelta(minutes=1))

    assert broker.order(_id("ABC", Purpose.TARGET)).status is OrderStatus.NEW
    assert broker.order(_id("XYZ", Purpose.TARGET)).status is OrderStatus.REJECTED
    assert tws.place_requests.count(_id("XYZ", Purpose.SOFT_STOP)) == 1
    events = store.query("SELECT rule, action, symbol FROM risk_events ORDER BY ts, action")
    assert events == [("protection", "fallback", "XYZ"), ("protection", "flattened", "XYZ")]

    _end_the_day(store, broker, clock, tws, settings_for)


def _watch(monitor: ExitMonitor, clock, until: datetime) -> None:
    """Tick once a minute from the clock's time up to (not including) `until`, as watch_positions does."""
    while clock.now() < until:
        monitor.tick(clock.now())
        clock.sleep_until(clock.now() + timedelta(minutes=1))


def test_tws_going_away_for_a_minute_is_waited_out_and_a_stop_crossed_meanwhile_is_sold_at_the_reconnect(
    connect, tws, clock, settings_for, tmp_path
):
    broker = connect()  # request_timeout_s=5: how long a call waits for TWS to come back before TransientError
    store = Store(tmp_path / "ob.ducklake")
    store.migrate()
    record_orders(store, DAY, [broker.submit(moo_entry(DAY, Symbol(s), 100)) for s in ("ABC", "XYZ")])
    clock.sleep_until(at("09:30"))
    for s in ("ABC", "XYZ"):
        tws.fill(_id(s, Purpose.ENTRY), "50.00")
    eventually(lambda: all(broker.order(_id(s, Purpose.ENTRY)).status is OrderStatus.FILLED for s in ("ABC", "XYZ")))
    market = ScriptedMarket(DAY, {"ABC": 50.0, "XYZ": 50.0}, at("09:30"), at("16:00"))
    market.set_bar("XYZ", at("11:00"), 49.90, 49.95, 49.40, 49.50)  # through the 49.55 stop; the fake does not fill it
    monitor = ExitMonitor(store, broker, market, DAY, ExitPolicy(), run_id="run-1")
    _watch(monitor, clock, at("11:00"))

    tws.go_away()  # sockets closed, connects refused for the 11:00 tick
    started = time.monotonic()
    _watch(monitor, clock, at("11:01"))
    outage_tick_s = time.monotonic() - started
    tws.come_back()
    _watch(monitor, clock, at("11:05"))

    assert 4.0 <= outage_tick_s < 10.0  # the read waited one request timeout for the reconnect, then gave up
    assert tws.connections == 2  # the adapter reconnected by itself, on the same port
    assert broker.order(_id("ABC", Purpose.TARGET)).status is OrderStatus.NEW  # its pair kept working at IB
    assert broker.order(_id("ABC", Purpose.STOP)).status is OrderStatus.NEW
    assert [broker.order(_id("XYZ", p)).status for p in (Purpose.TARGET, Purpose.STOP)] == [OrderStatus.CANCELLED] * 2
    soft = broker.order(_id("XYZ", Purpose.SOFT_STOP))
    assert (soft.intent.side, soft.intent.qty, soft.submitted_at) == (Side.SELL, 100, at("11:01"))
    assert (soft.intent.order_type, soft.status) == (OrderType.MARKET, OrderStatus.NEW)
    events = store.query("SELECT rule, action, symbol FROM risk_events ORDER BY ts, action")
    assert events == [
        ("broker_outage", "fallback", None), ("broker_outage", "flattened", "XYZ"), ("broker_outage", "recovered", None),
    ]  # fmt: skip

    _end_the_day(store, broker, clock, tws, settings_for)


def _end_the_day(store, broker, clock, tws, settings_for) -> None:
    """XYZ's market sell fills, the 15:45 liquidation sells ABC; the day ends flat, each order placed once."""
    tws.fill(_id("XYZ", Purpose.SOFT_STOP), "49.50")
    clock.sleep_until(at("15:45"))
    run = RunContext("run-2", "liquidate_eod", DAY, "replay", settings_for(tws.port))
    _sell_what_we_opened(store, broker, clock, run)
    tws.fill(_id("ABC", Purpose.EOD), "50.00")

    assert eventually(lambda: broker.positions() == {IBM_HOLDING.symbol: IBM_HOLDING})
    assert len(tws.place_requests) == len(set(tws.place_requests))
