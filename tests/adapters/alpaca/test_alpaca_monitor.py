"""Intraday steps against the fake Alpaca: what a real broker does that the paper broker never does."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from openbell.clock import SimClock
from openbell.core.exits import ExitPolicy
from openbell.core.orders import moo_entry, protective_exit
from openbell.core.types import ClientOrderId, OrderStatus, Purpose, Symbol, client_order_id
from openbell.monitor import ExitMonitor
from openbell.store import Store
from openbell.store.ledger import record_orders
from openbell.tasks.intraday import _sell_what_we_opened
from openbell.tasks.runs import RunContext
from openbell.venues.alpaca import AlpacaBroker
from tests.adapters.alpaca.alpaca_support import API_KEY, DAY, FAST, SECRET_KEY, alpaca_settings, at
from tests.fakes.fake_alpaca import FakeAlpaca
from tests.fakes.scripted_market import ScriptedMarket

ENTRY, TARGET, STOP, EOD = (ClientOrderId(f"ob-20250307-ABC-{p}") for p in ("entry", "target", "stop", "eod"))


def test_an_entry_that_filled_in_part_and_expired_is_protected_for_the_shares_it_got(broker, fake, clock, tmp_path):
    store = Store(tmp_path / "ob.ducklake")
    store.migrate()
    record_orders(store, DAY, [broker.submit(moo_entry(DAY, Symbol("ABC"), 100))])
    clock.sleep_until(at("09:30"))
    fake.fill(ENTRY, "50.00", qty=40)
    fake.expire(ENTRY)
    market = ScriptedMarket(DAY, {"ABC": 50.0}, at("09:30"), at("16:00"))

    ExitMonitor(store, broker, market, DAY, ExitPolicy(), run_id="run-1").tick(clock.now())

    target, stop = broker.order(TARGET), broker.order(STOP)
    assert broker.order(ENTRY).status is OrderStatus.EXPIRED
    assert (target.intent.qty, stop.intent.qty) == (40, 40)
    assert (target.intent.limit_price, stop.intent.stop_price) == (Decimal("51.30"), Decimal("49.55"))


def test_the_order_ttl_cancels_a_partly_filled_entry_at_alpaca_and_the_pair_protects_what_it_got(
    broker, fake, clock, tmp_path
):
    store = Store(tmp_path / "ob.ducklake")
    store.migrate()
    record_orders(store, DAY, [broker.submit(moo_entry(DAY, Symbol("ABC"), 100))])
    clock.sleep_until(at("09:30"))
    fake.fill(ENTRY, "50.00", qty=40)  # Alpaca reports it partially_filled
    market = ScriptedMarket(DAY, {"ABC": 50.0}, at("09:30"), at("16:00"))
    monitor = ExitMonitor(store, broker, market, DAY, ExitPolicy(), run_id="run-1", order_ttl=timedelta(seconds=90))

    _watch(monitor, clock, at("09:32"))  # 09:30 and 09:31: under 90 s since the open
    working = broker.order(ENTRY)
    _watch(monitor, clock, at("09:33"))  # 09:32: past the TTL

    entry, target, stop = broker.order(ENTRY), broker.order(TARGET), broker.order(STOP)
    (fill,) = [f for f in broker.fills_since() if f.client_order_id == ENTRY]
    assert (working.status, working.filled_qty, working.is_open()) == (OrderStatus.PARTIALLY_FILLED, 40, True)
    assert (entry.status, entry.filled_qty) == (OrderStatus.CANCELLED, 40)
    assert fake.orders_with_client_id(ENTRY)[0]["status"] == "canceled"
    assert (fill.qty, fill.price) == (40, Decimal("50.00"))
    assert (target.intent.qty, stop.intent.qty) == (40, 40)
    assert (target.intent.limit_price, stop.intent.stop_price) == (Decimal("51.30"), Decimal("49.55"))


def test_liquidation_waits_for_alpaca_to_confirm_the_cancels_before_selling(connect, fake, clock, tmp_path):
    broker = connect(cancel_wait_s=0.0)  # the adapter returns the pending cancel at once: the task must wait
    store = Store(tmp_path / "ob.ducklake")
    store.migrate()
    record_orders(store, DAY, [broker.submit(moo_entry(DAY, Symbol("ABC"), 100))])
    clock.sleep_until(at("09:30"))
    fake.fill(ENTRY, "50.00")
    entry = broker.order(ENTRY)
    record_orders(
        store, DAY, list(broker.submit_oco(*protective_exit(DAY, Symbol("ABC"), 100, entry.avg_fill_price, ExitPolicy())))
    )
    fake.slow_cancels(requests=40)  # outlasts the reads before the sell, not the wait for the cancel
    clock.sleep_until(at("15:45"))
    run = RunContext("run-1", "liquidate_eod", DAY, "replay", alpaca_settings(fake.url))

    flattened = _sell_what_we_opened(store, broker, clock, run)

    eod = broker.order(EOD)
    assert flattened == 1
    assert (eod.status, eod.intent.qty) == (OrderStatus.NEW, 100)
    assert broker.order(TARGET).status is OrderStatus.CANCELLED


# --- the monitor when the broker refuses a pair, goes away, or holds many positions ---------------------------
def _day_with_entries(broker, fake, clock, store, symbols: list[str], price: str = "50.00") -> None:
    """Market-on-open entries of 100 shares, filled at the open at `price`; the clock at 09:30."""
    record_orders(store, DAY, [broker.submit(moo_entry(DAY, Symbol(s), 100)) for s in symbols])
    clock.sleep_until(at("09:30"))
    for s in symbols:
        fake.fill(_id(s, Purpose.ENTRY), price)


def _id(symbol: str, purpose: Purpose) -> ClientOrderId:
    return client_order_id(DAY, symbol, purpose)


def _watch(monitor: ExitMonitor, clock, until: datetime) -> None:
    """Tick once a minute from the clock's time up to (not including) `until`, as watch_positions does."""
    while clock.now() < until:
        monitor.tick(clock.now())
        clock.sleep_until(clock.now() + timedelta(minutes=1))


def _liquidate_and_fill(store, broker, fake, clock) -> None:
    """The 15:45 liquidation, then the fake fills its market sells at 50.00."""
    clock.sleep_until(at("15:45"))
    _sell_what_we_opened(
        store, broker, clock, RunContext("run-2", "liquidate_eod", DAY, "replay", alpaca_settings(fake.url))
    )
    for symbol in {o["symbol"] for o in fake.orders_with_client_id_prefix(f"ob-{DAY:%Y%m%d}-") if o["type"] == "market"}:
        order = broker.order(_id(symbol, Purpose.EOD))
        if order is not None and order.is_open():
            fake.fill(order.client_order_id, "50.00")


def _sent_once(fake) -> bool:
    ids = [o["client_order_id"] for o in fake.orders_with_client_id_prefix("ob-")]
    return len(ids) == len(set(ids))


def _events(store) -> list[tuple]:
    return store.query("SELECT rule, action, symbol FROM risk_events WHERE trade_date = ? ORDER BY ts, rule, action", [DAY])


def test_a_refused_pair_leaves_the_others_protected_and_the_monitor_sells_at_its_own_stop(broker, fake, clock, tmp_path):
    store = Store(tmp_path / "ob.ducklake")
    store.migrate()
    _day_with_entries(broker, fake, clock, store, ["AAA", "BBB", "CCC"])
    fake.refuse_orders(_id("BBB", Purpose.TARGET))  # Alpaca's pattern-day-trader 403, on every try
    market = ScriptedMarket(DAY, {"AAA": 50.0, "BBB": 50.0, "CCC": 50.0}, at("09:30"), at("16:00"))
    market.set_bar("BBB", at("09:41"), 49.90, 49.95, 49.40, 49.50)  # through the 49.55 stop
    monitor = ExitMonitor(store, broker, market, DAY, ExitPolicy(), run_id="run-1")

    _watch(monitor, clock, at("09:50"))

    assert [broker.order(_id(s, Purpose.TARGET)).status for s in ("AAA", "CCC")] == [OrderStatus.NEW] * 2
    assert broker.order(_id("BBB", Purpose.TARGET)) is None
    (soft,) = fake.orders_with_client_id(_id("BBB", Purpose.SOFT_STOP))
    assert (soft["type"], soft["side"], Decimal(soft["qty"]), soft["submitted_at"][11:16]) == (
        "market",
        "sell",
        100,
        "14:42",
    )
    tries = [r for r in fake.requests if r == "POST /v2/orders"]
    assert len(tries) == 3 + 2 + 4 + 1  # entries, two pairs, BBB's pair at 09:30, 09:31, 09:33, 09:37, its market sell
    assert _events(store) == [("protection", "fallback", "BBB"), ("protection", "flattened", "BBB")]
    assert monitor.held == {}

    fake.fill(_id("BBB", Purpose.SOFT_STOP), "49.50")
    _liquidate_and_fill(store, broker, fake, clock)

    assert broker.positions() == {}
    assert _sent_once(fake)


def test_an_outage_mid_day_is_waited_out_and_a_stop_crossed_meanwhile_is_flattened(broker, fake, clock, tmp_path):
    store = Store(tmp_path / "ob.ducklake")
    store.migrate()
    _day_with_entries(broker, fake, clock, store, ["AAA", "BBB"])
    market = ScriptedMarket(DAY, {"AAA": 50.0, "BBB": 50.0}, at("09:30"), at("16:00"))
    market.set_bar("BBB", at("11:00"), 49.90, 49.95, 49.40, 49.50)  # while the broker cannot be reached
    monitor = ExitMonitor(store, broker, market, DAY, ExitPolicy(), run_id="run-1")
    _watch(monitor, clock, at("11:00"))

    fake.stop()  # connections refused for the 11:00 tick
    _watch(monitor, clock, at("11:01"))
    fake.start()
    _watch(monitor, clock, at("11:05"))

    assert broker.order(_id("AAA", Purpose.TARGET)).status is OrderStatus.NEW  # its pair kept working
    assert broker.order(_id("BBB", Purpose.TARGET)).status is OrderStatus.CANCELLED
    (soft,) = fake.orders_with_client_id(_id("BBB", Purpose.SOFT_STOP))
    assert soft["submitted_at"][11:16] == "16:01"  # 11:01 New York, at the reconnect
    assert sorted(_events(store), key=str) == [
        ("broker_outage", "fallback", None), ("broker_outage", "flattened", "BBB"), ("broker_outage", "recovered", None),
    ]  # fmt: skip

    fake.fill(_id("BBB", Purpose.SOFT_STOP), "49.50")
    _liquidate_and_fill(store, broker, fake, clock)

    assert broker.positions() == {}
    assert _sent_once(fake)


def _requests_per_tick(tmp_path, positions: int) -> tuple[int, int]:
    """(requests of the tick that protects `positions` filled entries, requests of each later tick), on a fresh fake."""
    clock = SimClock(at("09:00"))
    fake = FakeAlpaca(clock, api_key=API_KEY, secret_key=SECRET_KEY).start()
    broker = AlpacaBroker(alpaca_settings(fake.url), clock, DAY, **FAST)
    store = Store(tmp_path / f"ob-{positions}.ducklake")
    store.migrate()
    try:
        _day_with_entries(broker, fake, clock, store, [f"S{i:02d}" for i in range(positions)])
        monitor = ExitMonitor(store, broker, ScriptedMarket(DAY, {}, at("09:30"), at("09:30")), DAY, ExitPolicy())
        counts = []
        for _ in range(4):
            before = len(fake.requests)
            monitor.tick(clock.now())
            counts.append(len(fake.requests) - before)
            clock.sleep_until(clock.now() + timedelta(minutes=1))
    finally:
        broker.close()
        fake.stop()
    assert len(set(counts[1:])) == 1
    return counts[0], counts[1]


def test_a_monitor_tick_costs_the_same_requests_with_20_positions_as_with_1(tmp_path):
    first_with_1, tick_with_1 = _requests_per_tick(tmp_path, 1)

    first_with_20, tick_with_20 = _requests_per_tick(tmp_path, 20)

    assert tick_with_20 == tick_with_1 == 2  # the day's orders and the fills: 2 of Alpaca's 200 a minute
    assert first_with_20 - tick_with_20 == 20 * 2  # protecting an entry: a lookup of its id, then the pair


def test_a_broker_that_stops_answering_mid_tick_is_not_asked_again_before_the_next_tick(broker, fake, clock, tmp_path):
    store = Store(tmp_path / "ob.ducklake")
    store.migrate()
    _day_with_entries(broker, fake, clock, store, ["AAA", "BBB", "CCC"])
    fake.rate_limit(times=1_000, method="POST")  # every order is refused busy, past alpaca-py's own retries
    market = ScriptedMarket(DAY, {"AAA": 50.0, "BBB": 50.0, "CCC": 50.0}, at("09:30"), at("16:00"))
    monitor = ExitMonitor(store, broker, market, DAY, ExitPolicy(), run_id="run-1")
    posts = fake.requests.count("POST /v2/orders")

    monitor.tick(clock.now())

    assert set(monitor.held) == {"AAA"}  # the first pair failed; BBB and CCC wait for the next minute
    assert fake.requests.count("POST /v2/orders") > posts
    assert fake.orders_with_client_id_prefix(f"ob-{DAY:%Y%m%d}-BBB-t") == []


def test_alpaca_keeps_the_fixed_stop_and_the_monitor_trails_above_it(broker, fake, clock, tmp_path):
    store = Store(tmp_path / "ob.ducklake")
    store.migrate()
    _day_with_entries(broker, fake, clock, store, ["ABC"])
    market = ScriptedMarket(DAY, {"ABC": 50.0}, at("09:30"), at("16:00"))
    market.set_bar("ABC", at("09:35"), 50.50, 50.90, 50.45, 50.80)  # trails the stop up to 50.39 (1% below 50.90)
    market.set_bar("ABC", at("09:36"), 50.70, 50.75, 50.30, 50.35)  # crosses 50.39, far above the broker's 49.55
    monitor = ExitMonitor(store, broker, market, DAY, ExitPolicy(trail_pct=Decimal(1)), run_id="run-1")

    _watch(monitor, clock, at("09:37"))

    stop = broker.order(_id("ABC", Purpose.STOP))
    assert (stop.intent.order_type.value, stop.intent.stop_price, stop.status) == ("stop", Decimal("49.55"), OrderStatus.NEW)
    assert not fake.orders_with_client_id(_id("ABC", Purpose.SOFT_STOP))  # the 09:36 bar completes at 09:37

    _watch(monitor, clock, at("09:38"))

    (soft,) = fake.orders_with_client_id(_id("ABC", Purpose.SOFT_STOP))
    assert (soft["type"], Decimal(soft["qty"]), soft["submitted_at"][11:16]) == ("market", 100, "14:37")
    assert broker.order(_id("ABC", Purpose.TARGET)).status is OrderStatus.CANCELLED
    fake.fill(_id("ABC", Purpose.SOFT_STOP), "50.33")
    _watch(monitor, clock, at("09:40"))

    assert monitor.flat and broker.positions() == {}
    assert _events(store) == []  # an exit rule, not a guard
    assert not [o for o in fake.orders_with_client_id_prefix("ob-") if o["type"] == "trailing_stop"]
    assert _sent_once(fake)


def test_the_monitor_leaves_a_fixed_stop_crossing_to_alpacas_pair(broker, fake, clock, tmp_path):
    store = Store(tmp_path / "ob.ducklake")
    store.migrate()
    _day_with_entries(broker, fake, clock, store, ["ABC"])
    market = ScriptedMarket(DAY, {"ABC": 50.0}, at("09:30"), at("16:00"))
    market.set_bar("ABC", at("09:33"), 49.90, 49.95, 49.40, 49.50)  # through the fixed 49.55: the broker's stop fills
    monitor = ExitMonitor(store, broker, market, DAY, ExitPolicy(trail_pct=Decimal(1)), run_id="run-1")

    _watch(monitor, clock, at("09:35"))

    assert not fake.orders_with_client_id(_id("ABC", Purpose.SOFT_STOP))
    assert broker.order(_id("ABC", Purpose.STOP)).is_open()
