"""The exit monitor against the fake TWS: a refused pair is held by the monitor, the others stay protected at IB."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from scripted_market import ScriptedMarket

from openbell.core.exits import ExitPolicy
from openbell.core.orders import moo_entry
from openbell.core.types import OrderStatus, Position, Purpose, Symbol, client_order_id
from openbell.ledger import record_orders
from openbell.monitor import ExitMonitor
from openbell.store import Store
from tasks.intraday import _sell_what_we_opened
from tasks.runs import RunContext

NY = ZoneInfo("America/New_York")
DAY = datetime(2025, 3, 7).date()
IBM_HOLDING = Position(Symbol("IBM"), 100, Decimal("140.0000"))


def at(hhmm: str) -> datetime:
    hour, minute = map(int, hhmm.split(":"))
    return datetime(DAY.year, DAY.month, DAY.day, hour, minute, tzinfo=NY)


def _id(symbol: str, purpose: Purpose):
    return client_order_id(DAY, symbol, purpose)


def eventually(probe, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while not (result := probe()):
        if time.monotonic() > deadline:
            raise AssertionError(f"still not true after {timeout} s")
        time.sleep(0.02)
    return result


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

    tws.fill(_id("XYZ", Purpose.SOFT_STOP), "49.50")
    clock.sleep_until(at("15:45"))
    run = RunContext("run-2", "liquidate_eod", DAY, "replay", settings_for(tws.port))
    _sell_what_we_opened(store, broker, clock, run)
    tws.fill(_id("ABC", Purpose.EOD), "50.00")

    assert eventually(lambda: broker.positions() == {IBM_HOLDING.symbol: IBM_HOLDING})
    assert len(tws.place_requests) == len(set(tws.place_requests))
