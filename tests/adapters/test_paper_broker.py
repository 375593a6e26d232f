"""The paper broker as a real adapter: its fill model, event timing and books, over hand-made minute bars."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from openbell import calendar
from openbell.clock import SimClock
from openbell.core.backtest import FillCosts
from openbell.core.exits import ExitPolicy
from openbell.core.orders import liquidation, moo_entry, protective_exit
from openbell.core.types import (
    Order,
    OrderIntent,
    OrderStatus,
    OrderType,
    Position,
    Purpose,
    Side,
    Symbol,
    client_order_id,
)
from openbell.errors import OrderRejected
from openbell.store import Store
from openbell.venues.marketdata import DAILY_COLUMNS, MINUTE_COLUMNS, OPENING_PRINT_COLUMNS, MarketData
from openbell.venues.paper import PaperBroker

NY = ZoneInfo("America/New_York")
DAY = date(2018, 3, 1)  # a full session: liquidation 15:45, close 16:00
NEXT_DAY = date(2018, 3, 2)
ABC = Symbol("ABC")
XYZ = Symbol("XYZ")
POLICY = ExitPolicy()  # +2.6% / -0.9%: from a 50.00 entry, target 51.30 and stop 49.55


def at(hhmm: str, second: int = 0, day: date = DAY) -> datetime:
    """A moment of `day`, New York time."""
    hour, minute = map(int, hhmm.split(":"))
    return datetime.combine(day, time(hour, minute, second), tzinfo=NY)


def bar(hhmm: str, open_: float, high: float, low: float, close: float, symbol: str = ABC, day: date = DAY) -> dict:
    return {"symbol": symbol, "ts": at(hhmm, day=day), "open": open_, "high": high, "low": low, "close": close, "volume": 1}


def flat(hhmm: str, price: float, symbol: str = ABC, day: date = DAY) -> dict:
    """A bar that trades at one price only (touches neither target nor stop of a 50.00 entry)."""
    return bar(hhmm, price, price, price, price, symbol, day)


class FakeMarket:
    """MarketData over a hand-made minute-bar table; no daily bars."""

    def __init__(self, bars: Sequence[dict]) -> None:
        frame = pd.DataFrame(list(bars), columns=list(MINUTE_COLUMNS))
        frame["ts"] = pd.to_datetime(frame["ts"], utc=True).dt.tz_convert("America/New_York")
        frame = frame.astype({"open": "float64", "high": "float64", "low": "float64", "close": "float64"})
        frame["volume"] = frame["volume"].astype("int64")
        self._minute = frame.sort_values(["symbol", "ts"], ignore_index=True)

    def daily_bars(self, start: date, end: date, symbols: Collection[str] | None = None) -> pd.DataFrame:
        return pd.DataFrame(columns=list(DAILY_COLUMNS))

    def minute_bars(self, day: date, symbols: Collection[str] | None = None) -> pd.DataFrame:
        rows = self._minute["ts"].dt.date == day
        if symbols is not None:
            rows &= self._minute["symbol"].isin(list(symbols))
        return self._minute.loc[rows].reset_index(drop=True)

    def opening_prints(self, day: date, symbols: Collection[str] | None = None) -> pd.DataFrame:
        bars = self.minute_bars(day, symbols)
        opening = bars.loc[bars["ts"] == datetime.combine(day, time(9, 30), tzinfo=NY), list(OPENING_PRINT_COLUMNS)]
        return opening.reset_index(drop=True)

    def symbols(self) -> list[str]:
        return sorted(self._minute["symbol"].unique())


BrokerFactory = Callable[..., tuple[PaperBroker, SimClock]]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "paper.ducklake"


@pytest.fixture
def store(db_path: Path) -> Store:
    store = Store(db_path)
    store.migrate()
    return store


@pytest.fixture
def make_broker(store: Store) -> BrokerFactory:
    """A paper broker for DAY over `bars`, on the test's store, with a simulated clock at `start`."""

    def make(
        bars: Sequence[dict], start: datetime | None = None, costs: FillCosts = FillCosts()
    ) -> tuple[PaperBroker, SimClock]:
        clock = SimClock(start or at("09:00"))
        return PaperBroker(store, FakeMarket(bars), clock, DAY, costs), clock

    return make


def entered(broker: PaperBroker, clock: SimClock, shares: int = 100) -> Order:
    """Submit a market-on-open buy of ABC before the open and move the clock to the open."""
    entry = moo_entry(DAY, ABC, shares)
    broker.submit(entry)
    clock.sleep_until(at("09:30"))
    order = broker.order(entry.client_order_id)
    assert order is not None and order.status is OrderStatus.FILLED
    return order


def protect(broker: PaperBroker, entry: Order) -> tuple[OrderIntent, OrderIntent]:
    target, stop = protective_exit(DAY, ABC, entry.intent.qty, entry.avg_fill_price, POLICY)
    broker.submit(target)
    broker.submit(stop)
    return target, stop


def test_fake_market_satisfies_the_market_data_protocol() -> None:
    assert isinstance(FakeMarket([flat("09:30", 50.0)]), MarketData)


# -- idempotent submission --------------------------------------------------------------------------


def test_submitting_the_same_intent_twice_returns_the_same_order_and_stores_one_row(
    make_broker: BrokerFactory, store: Store
) -> None:
    broker, _ = make_broker([flat("09:30", 50.0)])
    intent = moo_entry(DAY, ABC, 100)

    first = broker.submit(intent)
    second = broker.submit(intent)

    assert second == first
    assert store.query("SELECT count(*) FROM paper_orders") == [(1,)]


def test_a_different_intent_under_a_used_client_order_id_is_rejected(make_broker: BrokerFactory) -> None:
    broker, _ = make_broker([flat("09:30", 50.0)])
    broker.submit(moo_entry(DAY, ABC, 100))

    with pytest.raises(OrderRejected, match="already used"):
        broker.submit(moo_entry(DAY, ABC, 200))


# -- market-on-open entries ---------------------------------------------------------------------------


def test_moo_waits_until_the_clock_reaches_the_open(make_broker: BrokerFactory) -> None:
    broker, clock = make_broker([bar("09:30", 50.0, 50.5, 49.8, 50.2)])
    entry = moo_entry(DAY, ABC, 100)
    broker.submit(entry)

    clock.sleep_until(at("09:29", 59))

    assert broker.order(entry.client_order_id).status is OrderStatus.NEW
    assert broker.fills_since() == []


def test_moo_fills_at_the_open_of_the_0930_bar_when_the_clock_reaches_0930(make_broker: BrokerFactory) -> None:
    broker, clock = make_broker([bar("09:30", 50.13, 50.5, 49.8, 50.2), flat("09:31", 50.4)])
    entry = moo_entry(DAY, ABC, 100)
    broker.submit(entry)

    clock.sleep_until(at("09:30"))

    order = broker.order(entry.client_order_id)
    assert (order.status, order.filled_qty, order.avg_fill_price) == (OrderStatus.FILLED, 100, Decimal("50.13"))
    (fill,) = broker.fills_since()
    assert (fill.price, fill.qty, fill.ts) == (Decimal("50.13"), 100, at("09:30"))


@pytest.mark.parametrize(
    ("shares", "commission"),
    [(100, Decimal("1.00")), (200, Decimal("1.00")), (201, Decimal("1.005")), (1_000, Decimal("5.00"))],
)
def test_fill_commission_is_the_larger_of_one_dollar_and_half_a_cent_per_share(
    make_broker: BrokerFactory, shares: int, commission: Decimal
) -> None:
    broker, clock = make_broker([flat("09:30", 50.0)])

    entered(broker, clock, shares)

    (fill,) = broker.fills_since()
    assert fill.commission == commission


def test_slippage_makes_a_moo_buy_fill_worse_and_rounds_it_to_the_tick(make_broker: BrokerFactory) -> None:
    broker, clock = make_broker([flat("09:30", 50.13)], costs=FillCosts(slippage_bps=Decimal(10)))

    entered(broker, clock)

    (fill,) = broker.fills_since()
    assert fill.price == Decimal("50.18")  # 50.13 x 1.001 = 50.18013, to the cent


def test_moo_without_a_0930_bar_expires_unfilled(make_broker: BrokerFactory) -> None:
    broker, clock = make_broker([flat("09:31", 50.0), flat("09:32", 50.1)])
    entry = moo_entry(DAY, ABC, 100)
    broker.submit(entry)

    clock.sleep_until(at("09:35"))

    order = broker.order(entry.client_order_id)
    assert order.status is OrderStatus.EXPIRED
    assert "opening print" in order.reason
    assert (order.filled_qty, broker.fills_since(), broker.positions()) == (0, [], {})


def test_moo_is_accepted_at_the_0928_cutoff(make_broker: BrokerFactory) -> None:
    broker, _ = make_broker([flat("09:30", 50.0)], start=at("09:28"))

    order = broker.submit(moo_entry(DAY, ABC, 100))

    assert order.status is OrderStatus.NEW


def test_moo_submitted_after_the_0928_cutoff_is_rejected(make_broker: BrokerFactory, store: Store) -> None:
    broker, _ = make_broker([flat("09:30", 50.0)], start=at("09:29"))

    with pytest.raises(OrderRejected, match="09:28"):
        broker.submit(moo_entry(DAY, ABC, 100))
    assert store.query("SELECT count(*) FROM paper_orders") == [(0,)]


def test_moo_sent_before_the_previous_session_closed_is_rejected(make_broker: BrokerFactory) -> None:
    previous_close = datetime(2018, 2, 28, 16, 0, tzinfo=NY)
    broker, _ = make_broker([flat("09:30", 50.0)], start=previous_close - timedelta(minutes=1))

    with pytest.raises(OrderRejected, match="accepted from 2018-02-28 16:00"):
        broker.submit(moo_entry(DAY, ABC, 100))


def test_moo_window_runs_from_the_previous_close_to_0928(make_broker: BrokerFactory) -> None:
    broker, _ = make_broker([flat("09:30", 50.0)])

    window = broker.moo_window(DAY)

    assert (window.opens, window.cutoff) == (datetime(2018, 2, 28, 16, 0, tzinfo=NY), at("09:28"))


# -- protective exits ---------------------------------------------------------------------------------


def test_stop_fills_at_the_stop_price_and_cancels_the_target(make_broker: BrokerFactory) -> None:
    broker, clock = make_broker([flat("09:30", 50.0), bar("09:31", 49.9, 50.0, 49.5, 49.6), flat("09:32", 49.6)])
    target, stop = protect(broker, entered(broker, clock))

    clock.sleep_until(at("09:32"))

    stopped = broker.order(stop.client_order_id)
    assert (stopped.status, stopped.avg_fill_price) == (OrderStatus.FILLED, Decimal("49.55"))
    assert broker.fills_since(at("09:31"))[0].ts == at("09:31")
    cancelled = broker.order(target.client_order_id)
    assert cancelled.status is OrderStatus.CANCELLED
    assert "one-cancels-other" in cancelled.reason
    assert broker.open_orders() == []


def test_a_bar_is_simulated_only_once_its_minute_has_ended(make_broker: BrokerFactory) -> None:
    broker, clock = make_broker([flat("09:30", 50.0), bar("09:31", 49.9, 50.0, 49.5, 49.6)])
    _, stop = protect(broker, entered(broker, clock))

    clock.sleep_until(at("09:31", 59))

    assert broker.order(stop.client_order_id).status is OrderStatus.NEW


def test_target_fills_at_the_open_of_a_bar_that_gaps_above_it(make_broker: BrokerFactory) -> None:
    broker, clock = make_broker([flat("09:30", 50.0), bar("09:31", 52.0, 52.5, 51.9, 52.2)])
    target, stop = protect(broker, entered(broker, clock))

    clock.sleep_until(at("09:32"))

    filled = broker.order(target.client_order_id)
    assert (filled.status, filled.avg_fill_price) == (OrderStatus.FILLED, Decimal("52.00"))
    assert broker.order(stop.client_order_id).status is OrderStatus.CANCELLED


def test_exits_placed_at_0930_take_part_in_the_entry_bar(make_broker: BrokerFactory) -> None:
    broker, clock = make_broker([bar("09:30", 50.0, 50.2, 49.4, 49.6), flat("09:31", 49.6)])
    entry = entered(broker, clock)
    _, stop = protect(broker, entry)  # submitted at 09:30:00, when the entry bar starts

    clock.sleep_until(at("09:31"))

    stopped = broker.order(stop.client_order_id)
    assert (stopped.status, stopped.avg_fill_price) == (OrderStatus.FILLED, Decimal("49.55"))
    assert broker.fills_since()[-1].ts == at("09:30")


def test_untouched_exit_orders_expire_at_the_close(make_broker: BrokerFactory) -> None:
    broker, clock = make_broker([flat("09:30", 50.0), flat("15:59", 50.5)])
    target, stop = protect(broker, entered(broker, clock))

    clock.sleep_until(at("16:01"))

    assert broker.order(target.client_order_id).status is OrderStatus.EXPIRED
    assert broker.order(stop.client_order_id).status is OrderStatus.EXPIRED
    assert broker.positions()[ABC].qty == 100


# -- liquidation ----------------------------------------------------------------------------------------


def test_liquidation_fills_at_the_open_of_the_first_bar_after_submission(make_broker: BrokerFactory) -> None:
    # No 15:45 or 15:46 bar: the first bar that starts at or after the submission is 15:47.
    broker, clock = make_broker([flat("09:30", 50.0), flat("15:44", 50.3), flat("15:47", 50.7), flat("15:48", 50.9)])
    entered(broker, clock)
    clock.sleep_until(at("15:45"))
    sell = liquidation(DAY, ABC, 100)
    broker.submit(sell)

    clock.sleep_until(at("15:48"))

    order = broker.order(sell.client_order_id)
    assert (order.status, order.avg_fill_price) == (OrderStatus.FILLED, Decimal("50.70"))
    assert broker.fills_since(at("15:45"))[0].ts == at("15:47")
    assert broker.positions() == {}


def test_liquidation_without_a_later_bar_fills_at_the_last_close_once_the_session_is_over(
    make_broker: BrokerFactory,
) -> None:
    broker, clock = make_broker([flat("09:30", 50.0), bar("15:44", 50.3, 50.4, 50.2, 50.35)])
    entered(broker, clock)
    clock.sleep_until(at("15:45"))
    sell = liquidation(DAY, ABC, 100)
    broker.submit(sell)

    clock.sleep_until(at("16:00", 59))
    still_waiting = broker.order(sell.client_order_id).status
    clock.sleep_until(at("16:01"))

    assert still_waiting is OrderStatus.NEW
    order = broker.order(sell.client_order_id)
    assert (order.status, order.avg_fill_price) == (OrderStatus.FILLED, Decimal("50.35"))
    assert broker.fills_since(at("15:45"))[0].ts == calendar.session_close(DAY)


# -- books ---------------------------------------------------------------------------------------------


def test_a_new_broker_on_the_same_store_and_date_sees_the_same_orders_fills_and_positions(
    make_broker: BrokerFactory, store: Store
) -> None:
    bars = [flat("09:30", 50.0), bar("09:31", 49.9, 50.0, 49.5, 49.6), flat("10:00", 49.0)]
    costs = FillCosts(slippage_bps=Decimal(5))
    broker, clock = make_broker(bars, costs=costs)
    entry = entered(broker, clock, 300)
    target, stop = protect(broker, entry)
    clock.sleep_until(at("10:00"))
    ids = [entry.client_order_id, target.client_order_id, stop.client_order_id]
    before = ([broker.order(i) for i in ids], broker.fills_since(), broker.positions(), broker.account())
    broker.close()

    reopened = PaperBroker(Store(store.path), FakeMarket(bars), SimClock(at("10:00")), DAY, costs)

    after = ([reopened.order(i) for i in ids], reopened.fills_since(), reopened.positions(), reopened.account())
    assert after == before
    assert [o.status for o in after[0]] == [OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.FILLED]


def test_positions_include_holdings_held_before_the_system_traded(make_broker: BrokerFactory, store: Store) -> None:
    store.insert("paper_holdings", [{"symbol": XYZ, "qty": 200, "avg_price": Decimal("20.00")}])
    broker, clock = make_broker([flat("09:30", 50.0)])

    entered(broker, clock, 100)

    positions = broker.positions()
    assert {s: (p.qty, p.avg_price) for s, p in positions.items()} == {
        ABC: (100, Decimal("50.00")),
        XYZ: (200, Decimal("20.00")),
    }


def test_a_position_bought_again_after_going_flat_on_an_earlier_day_carries_the_new_cost(store: Store) -> None:
    market = FakeMarket([flat("09:30", 50.0), flat("09:31", 52.0), flat("09:30", 60.0, day=NEXT_DAY)])
    clock = SimClock(at("09:00"))
    first_day = PaperBroker(store, market, clock, DAY)
    first_day.submit(moo_entry(DAY, ABC, 100))
    clock.sleep_until(at("09:30", 30))
    first_day.submit(liquidation(DAY, ABC, 100))
    clock.sleep_until(at("16:01"))
    first_day.close()
    clock = SimClock(at("09:00", day=NEXT_DAY))
    next_day = PaperBroker(store, market, clock, NEXT_DAY)
    next_day.submit(moo_entry(NEXT_DAY, ABC, 100))

    clock.sleep_until(at("09:31", day=NEXT_DAY))

    assert next_day.positions() == {ABC: Position(ABC, 100, Decimal("60.00"))}


def test_account_equity_is_starting_cash_plus_cash_moves_plus_holdings(make_broker: BrokerFactory, store: Store) -> None:
    store.insert("paper_holdings", [{"symbol": XYZ, "qty": 200, "avg_price": Decimal("20.00")}])
    broker, clock = make_broker([flat("09:30", 50.0), flat("09:31", 52.0)])
    entered(broker, clock, 100)
    clock.sleep_until(at("09:30", 30))
    broker.submit(liquidation(DAY, ABC, 100))  # after the 09:30 bar started: fills at the 09:31 open

    clock.sleep_until(at("09:32"))

    cash_moves = -Decimal("5000") - Decimal("1") + Decimal("5200") - Decimal("1")
    account = broker.account()
    assert account.cash == Decimal(100_000) + cash_moves
    assert account.equity == Decimal(100_000) + cash_moves + 200 * Decimal("20.00")
    assert account.paper is True


def test_cancelling_a_working_order_cancels_it(make_broker: BrokerFactory) -> None:
    broker, clock = make_broker([flat("09:30", 50.0)])
    target, _ = protect(broker, entered(broker, clock))

    cancelled = broker.cancel(target.client_order_id)

    assert cancelled.status is OrderStatus.CANCELLED
    assert broker.order(target.client_order_id) == cancelled


def test_cancelling_a_filled_order_returns_it_unchanged(make_broker: BrokerFactory) -> None:
    broker, clock = make_broker([flat("09:30", 50.0)])
    filled = entered(broker, clock)

    returned = broker.cancel(filled.client_order_id)

    assert returned == filled
    assert broker.order(filled.client_order_id) == filled


def test_cancelling_an_unknown_order_is_rejected(make_broker: BrokerFactory) -> None:
    broker, _ = make_broker([flat("09:30", 50.0)])

    with pytest.raises(OrderRejected, match="no such order"):
        broker.cancel(client_order_id(DAY, ABC, Purpose.ENTRY))


def test_orders_submitted_inside_a_store_batch_are_persisted_when_the_batch_ends(
    make_broker: BrokerFactory, store: Store, db_path: Path
) -> None:
    symbols = [Symbol(f"S{i:03d}") for i in range(60)]
    broker, _ = make_broker([flat("09:30", 10.0 + i, symbol=s) for i, s in enumerate(symbols)])

    with store.batch():
        for symbol in symbols:
            broker.submit(moo_entry(DAY, symbol, 100))

    rows = Store(db_path).query("SELECT symbol, status FROM paper_orders ORDER BY symbol")
    assert rows == [(s, "new") for s in symbols]


# -- buying power ---------------------------------------------------------------------------------


class MarketWithPriorClose(FakeMarket):
    """The hand-made minute bars, and a prior session's close of 50.00 for every symbol."""

    def daily_bars(self, start: date, end: date, symbols: Collection[str] | None = None) -> pd.DataFrame:
        rows = [{"symbol": s, "date": start, "open": 50.0, "high": 50.0, "low": 50.0, "close": 50.0, "volume": 1}
                for s in (symbols or self.symbols())]  # fmt: skip
        return pd.DataFrame(rows, columns=list(DAILY_COLUMNS))


def test_a_market_buy_beyond_the_cash_is_refused_with_what_it_needs_and_what_is_left(make_broker: BrokerFactory) -> None:
    broker, clock = make_broker([flat("09:30", 50.0), flat("09:31", 50.0)], start=at("09:32"))
    too_big = OrderIntent(client_order_id(DAY, ABC, Purpose.ENTRY), ABC, Side.BUY, 2_001, OrderType.MARKET, Purpose.ENTRY)

    with pytest.raises(OrderRejected, match=r"insufficient buying power: 2001 ABC needs about \$100,050.00, \$100,000.00"):
        broker.submit(too_big)

    fits = OrderIntent(client_order_id(DAY, ABC, Purpose.ENTRY), ABC, Side.BUY, 2_000, OrderType.MARKET, Purpose.ENTRY)
    assert broker.submit(fits).status is OrderStatus.NEW


def test_working_entries_hold_buying_power_so_the_entry_that_would_overdraw_is_refused(store: Store) -> None:
    bars = [flat("09:30", 50.0), flat("09:30", 50.0, XYZ)]
    broker = PaperBroker(store, MarketWithPriorClose(bars), SimClock(at("09:00")), DAY)
    broker.submit(moo_entry(DAY, ABC, 1_500))  # $75,000 of the $100,000 at the prior close

    with pytest.raises(OrderRejected, match="insufficient buying power"):
        broker.submit(moo_entry(DAY, XYZ, 600))  # $30,000 more
    assert broker.submit(moo_entry(DAY, XYZ, 500)).status is OrderStatus.NEW  # $25,000 fits exactly
