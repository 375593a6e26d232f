"""The paper broker's participation cap: a large order against a small bar volume fills in parts across bars;
and the order TTL the exit monitor applies to an entry still working."""

# ruff: noqa: F811 (test_paper_broker's fixtures, taken as arguments)
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from openbell.clock import SimClock
from openbell.core.backtest import FillCosts
from openbell.core.orders import moo_entry, protective_exit
from openbell.core.risk import Halt, Rule
from openbell.core.types import OrderStatus, Purpose, Side, client_order_id
from openbell.monitor import ExitMonitor
from openbell.store import Store
from openbell.venues.paper import PaperBroker
from tests.adapters.test_paper_broker import (  # noqa: F401 (the fixtures are used by name)
    ABC,
    DAY,
    POLICY,
    FakeMarket,
    at,
    db_path,
    store,
)

CAPPED = FillCosts(max_participation_pct=Decimal(10))  # 10% of each bar's volume
ENTRY, TARGET, STOP = (client_order_id(DAY, ABC, p) for p in (Purpose.ENTRY, Purpose.TARGET, Purpose.STOP))
TTL = timedelta(seconds=90)


def vbar(hhmm: str, open_: float, high: float, low: float, close: float, volume: int) -> dict:
    return {"symbol": ABC, "ts": at(hhmm), "open": open_, "high": high, "low": low, "close": close, "volume": volume}


THIN_OPEN = [  # 1,000 shares at 10% of these volumes: 400 at the auction, 300, then the last 300
    vbar("09:30", 50.00, 50.05, 49.95, 50.00, 4_000),
    vbar("09:31", 50.10, 50.15, 50.05, 50.10, 3_000),
    vbar("09:32", 50.20, 50.25, 50.15, 50.20, 5_000),
    vbar("09:33", 50.20, 50.25, 50.15, 50.20, 5_000),
]


def paper(store: Store, bars: list[dict], costs: FillCosts = CAPPED) -> tuple[PaperBroker, SimClock]:
    clock = SimClock(at("09:00"))
    return PaperBroker(store, FakeMarket(bars), clock, DAY, costs), clock


def entry_fills(broker: PaperBroker) -> list[tuple]:
    return [
        (f.fill_id[-2:], f.qty, f.price, f"{f.ts:%H:%M}", f.commission)
        for f in broker.fills_since()
        if f.client_order_id == ENTRY
    ]


def test_a_large_market_on_open_order_fills_in_parts_across_bars_under_the_cap(store: Store) -> None:
    broker, clock = paper(store, THIN_OPEN)
    broker.submit(moo_entry(DAY, ABC, 1_000))

    clock.sleep_until(at("09:31"))  # the auction only
    after_auction = broker.order(ENTRY)
    clock.sleep_until(at("09:34"))
    done = broker.order(ENTRY)

    assert (after_auction.status, after_auction.filled_qty) == (OrderStatus.PARTIALLY_FILLED, 400)
    assert after_auction.is_open()
    assert entry_fills(broker) == [
        ("-1", 400, Decimal("50.00"), "09:30", Decimal("2.00")),  # max($1, $0.005 x 400)
        ("-2", 300, Decimal("50.10"), "09:31", Decimal("1.50")),  # the order's commission, spread over its fills
        ("-3", 300, Decimal("50.20"), "09:32", Decimal("1.50")),
    ]
    assert (done.status, done.filled_qty, done.avg_fill_price) == (OrderStatus.FILLED, 1_000, Decimal("50.09"))


def test_each_partial_fill_is_recorded_and_a_restarted_broker_reads_the_partial_order_back(store: Store) -> None:
    broker, clock = paper(store, THIN_OPEN)
    broker.submit(moo_entry(DAY, ABC, 1_000))
    clock.sleep_until(at("09:32"))  # the auction and the 09:31 bar
    broker.close()

    rows = store.query("SELECT fill_id, qty, price FROM paper_fills WHERE client_order_id = ? ORDER BY ts", [ENTRY])
    (status,) = store.query("SELECT status, filled_qty FROM paper_orders WHERE client_order_id = ?", [ENTRY])
    restarted, clock = paper(store, THIN_OPEN)
    clock.sleep_until(at("09:34"))

    assert [(r[0][-2:], r[1], r[2]) for r in rows] == [("-1", 400, Decimal("50.00")), ("-2", 300, Decimal("50.10"))]
    assert status == ("partially_filled", 700)
    assert (restarted.order(ENTRY).status, restarted.order(ENTRY).filled_qty) == (OrderStatus.FILLED, 1_000)
    assert [f[:2] for f in entry_fills(restarted)] == [("-1", 400), ("-2", 300), ("-3", 300)]


def test_with_the_cap_off_the_same_order_fills_whole_at_the_opening_print(store: Store) -> None:
    broker, clock = paper(store, THIN_OPEN, FillCosts())
    broker.submit(moo_entry(DAY, ABC, 1_000))

    clock.sleep_until(at("09:34"))

    assert entry_fills(broker) == [("-1", 1_000, Decimal("50.00"), "09:30", Decimal("5.00"))]
    assert (broker.order(ENTRY).status, broker.order(ENTRY).avg_fill_price) == (OrderStatus.FILLED, Decimal("50.00"))


def test_a_bar_whose_volume_allows_no_share_fills_nothing_and_the_order_waits(store: Store) -> None:
    broker, clock = paper(store, [vbar("09:30", 50.00, 50.05, 49.95, 50.00, 9), *THIN_OPEN[1:]])
    broker.submit(moo_entry(DAY, ABC, 500))

    clock.sleep_until(at("09:31"))
    waiting = broker.order(ENTRY)
    clock.sleep_until(at("09:33"))

    assert (waiting.status, waiting.filled_qty) == (OrderStatus.NEW, 0)  # 10% of 9 shares is no share
    assert [f[:3] for f in entry_fills(broker)] == [("-1", 300, Decimal("50.10")), ("-2", 200, Decimal("50.20"))]


def _entered_whole(store: Store, bars: list[dict]) -> tuple[PaperBroker, SimClock]:
    """1,000 shares bought at the 50.00 open (a deep opening bar), then the pair 51.30 / 49.55 at 09:31."""
    broker, clock = paper(store, [vbar("09:30", 50.00, 50.05, 49.95, 50.00, 100_000), *bars])
    broker.submit(moo_entry(DAY, ABC, 1_000))
    clock.sleep_until(at("09:31"))
    entry = broker.order(ENTRY)
    assert (entry.status, entry.filled_qty) == (OrderStatus.FILLED, 1_000)
    broker.submit_oco(*protective_exit(DAY, ABC, 1_000, entry.avg_fill_price, POLICY))
    return broker, clock


def test_a_target_fills_in_parts_at_its_limit_and_its_first_fill_cancels_the_stop(store: Store) -> None:
    broker, clock = _entered_whole(store, [
        vbar("09:31", 51.00, 51.40, 50.90, 51.20, 3_000),  # reaches 51.30: 300 shares
        vbar("09:32", 51.00, 51.10, 49.00, 49.50, 50_000),  # below the target (and the cancelled stop): nothing
        vbar("09:33", 51.20, 51.35, 51.10, 51.30, 5_000),  # 500
        vbar("09:34", 51.40, 51.50, 51.30, 51.45, 9_000),  # opens above the target: the last 200 at the open
    ])  # fmt: skip

    clock.sleep_until(at("09:35"))

    sells = [(f.qty, f.price, f"{f.ts:%H:%M}") for f in broker.fills_since() if f.client_order_id == TARGET]
    assert sells == [(300, Decimal("51.30"), "09:31"), (500, Decimal("51.30"), "09:33"), (200, Decimal("51.40"), "09:34")]
    assert (broker.order(TARGET).status, broker.order(TARGET).filled_qty) == (OrderStatus.FILLED, 1_000)
    assert broker.order(STOP).status is OrderStatus.CANCELLED
    assert broker.positions() == {}


def test_a_stop_that_began_to_fill_sells_the_rest_at_the_following_opens(store: Store) -> None:
    broker, clock = _entered_whole(store, [
        vbar("09:31", 49.80, 49.90, 49.40, 49.50, 2_000),  # through 49.55: 200 at the stop
        vbar("09:32", 49.30, 49.35, 49.10, 49.20, 5_000),  # triggered: 500 at the open
        vbar("09:33", 49.60, 49.70, 49.50, 49.60, 9_000),  # back above the stop, still at market: the last 300
    ])  # fmt: skip

    clock.sleep_until(at("09:32"))
    triggered = broker.order(STOP)
    clock.sleep_until(at("09:34"))

    sells = [(f.qty, f.price) for f in broker.fills_since() if f.client_order_id == STOP]
    assert (triggered.status, triggered.filled_qty) == (OrderStatus.PARTIALLY_FILLED, 200)
    assert broker.order(TARGET).status is OrderStatus.CANCELLED
    assert sells == [(200, Decimal("49.55")), (500, Decimal("49.30")), (300, Decimal("49.60"))]


# --- the order TTL, applied by the exit monitor ----------------------------------------------------------------


def _watch(monitor: ExitMonitor, clock: SimClock, until: str) -> None:
    while clock.now() < at(until):
        monitor.tick(clock.now())
        clock.sleep_until(clock.now() + timedelta(minutes=1))


def test_the_ttl_cancels_a_partly_filled_entry_and_the_monitor_protects_what_it_got(store: Store) -> None:
    broker, clock = paper(store, THIN_OPEN)
    broker.submit(moo_entry(DAY, ABC, 1_000))
    clock.sleep_until(at("09:30"))
    monitor = ExitMonitor(store, broker, FakeMarket(THIN_OPEN), DAY, POLICY, run_id="run-1", order_ttl=TTL)

    _watch(monitor, clock, "09:32")  # 09:30 and 09:31: 60 s since the open, under the TTL
    working = broker.order(ENTRY)
    _watch(monitor, clock, "09:34")  # 09:32: 120 s; the 09:31 bar has filled 300 more by then

    entry, target, stop = broker.order(ENTRY), broker.order(TARGET), broker.order(STOP)
    assert (working.status, working.filled_qty) == (OrderStatus.PARTIALLY_FILLED, 700)
    assert (entry.status, entry.filled_qty, entry.reason) == (OrderStatus.CANCELLED, 700, "cancelled by request")
    assert [f[1] for f in entry_fills(broker)] == [400, 300]  # the 09:32 bar fills nothing more
    assert (target.intent.qty, stop.intent.qty) == (700, 700)
    assert (target.submitted_at, target.intent.limit_price) == (at("09:32"), Decimal("51.34"))  # 2.6% over 50.0429
    assert store.query("SELECT status, filled_qty FROM orders WHERE client_order_id = ?", [ENTRY]) == [("cancelled", 700)]


def test_without_a_ttl_a_partly_filled_entry_works_on_and_is_protected_whole_once_filled(store: Store) -> None:
    broker, clock = paper(store, THIN_OPEN)
    broker.submit(moo_entry(DAY, ABC, 1_000))
    clock.sleep_until(at("09:30"))
    monitor = ExitMonitor(store, broker, FakeMarket(THIN_OPEN), DAY, POLICY, run_id="run-1")

    _watch(monitor, clock, "09:33")  # at 09:32 the entry has 700 and is still working: no pair yet
    unprotected = broker.order(TARGET)
    _watch(monitor, clock, "09:34")  # the 09:32 bar filled the last 300

    assert unprotected is None
    assert (broker.order(ENTRY).status, broker.order(ENTRY).filled_qty) == (OrderStatus.FILLED, 1_000)
    assert (broker.order(TARGET).intent.qty, broker.order(STOP).intent.qty) == (1_000, 1_000)


def test_under_a_halt_a_partly_filled_entry_is_cancelled_and_what_it_got_is_sold(store: Store) -> None:
    broker, clock = paper(store, THIN_OPEN)
    broker.submit(moo_entry(DAY, ABC, 1_000))
    clock.sleep_until(at("09:31"))  # the auction filled 400
    halt = Halt(Rule.FLATTEN, "flattened by hand")
    monitor = ExitMonitor(store, broker, FakeMarket(THIN_OPEN), DAY, POLICY, run_id="run-1", halt=halt)

    _watch(monitor, clock, "09:33")

    sold = [(f.qty, f.price) for f in broker.fills_since() if f.side is Side.SELL]
    assert (broker.order(ENTRY).status, broker.order(ENTRY).filled_qty) == (OrderStatus.CANCELLED, 400)
    assert sold == [(300, Decimal("50.10")), (100, Decimal("50.20"))]  # the kill sell is capped too
    assert broker.positions() == {}
