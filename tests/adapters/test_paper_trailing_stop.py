"""The paper broker's trailing stop: filled by the rule `core.exits.step` follows and the replay engine applies."""

# ruff: noqa: F811 (test_paper_broker's fixtures, taken as arguments)
from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest

from openbell.clock import SimClock
from openbell.core.backtest import SessionBars, replay_sessions
from openbell.core.exits import ExitBar, ExitCode, ExitPolicy, ExitState, step
from openbell.core.orders import protective_exit
from openbell.core.prices import price_to_units, to_units
from openbell.core.types import OrderStatus, OrderType
from openbell.store import Store
from openbell.venues.paper import PaperBroker
from tests.adapters.test_paper_broker import (  # noqa: F401 (the fixtures are used by name)
    ABC,
    DAY,
    BrokerFactory,
    FakeMarket,
    at,
    bar,
    db_path,
    entered,
    flat,
    make_broker,
    store,
)

TRAILING = ExitPolicy(trail_pct=Decimal(1))  # from a 50.00 entry: target 51.30, stop max(49.55, 49.50) = 49.55
BARS = [
    bar("09:30", 50.00, 50.60, 49.90, 50.50),  # completed high 50.60: the stop rises to 50.09
    bar("09:31", 50.50, 50.80, 50.20, 50.70),  # above 50.09; high 50.80: 50.29
    bar("09:32", 50.60, 50.70, 50.10, 50.20),  # low reaches 50.29
    flat("10:00", 50.00),
]


def test_protective_exit_with_a_trailing_policy_sends_a_trailing_stop_from_the_fixed_stop() -> None:
    target, stop = protective_exit(DAY, ABC, 100, Decimal("50.00"), TRAILING)

    assert (target.order_type, target.limit_price) == (OrderType.LIMIT, Decimal("51.30"))
    assert (stop.order_type, stop.stop_price, stop.trail_percent, stop.trail_amount) == (
        OrderType.TRAILING_STOP,
        Decimal("49.55"),
        Decimal(1),
        None,
    )


def test_protective_exit_with_trail_atr_sends_a_trailing_amount_on_the_tick() -> None:
    _, stop = protective_exit(DAY, ABC, 100, Decimal("50.00"), ExitPolicy(trail_atr=Decimal("1.5")), atr=Decimal("0.8333"))

    assert (stop.trail_amount, stop.trail_percent, stop.stop_price) == (Decimal("1.25"), None, Decimal("49.55"))


def test_trailing_stop_rises_with_completed_highs_and_fills_at_its_level(make_broker: BrokerFactory) -> None:
    broker, clock = make_broker(BARS)
    entry = entered(broker, clock)
    target, stop = broker.submit_oco(*protective_exit(DAY, ABC, 100, entry.avg_fill_price, TRAILING))

    clock.sleep_until(at("09:40"))

    filled = broker.order(stop.client_order_id)
    assert (filled.status, filled.avg_fill_price) == (OrderStatus.FILLED, Decimal("50.29"))
    assert broker.fills_since()[-1].ts == at("09:32")
    assert broker.order(target.client_order_id).status is OrderStatus.CANCELLED


def test_trailing_stop_fills_at_the_open_when_a_bar_gaps_through_it(make_broker: BrokerFactory) -> None:
    bars = [*BARS[:2], bar("09:32", 50.00, 50.10, 49.80, 49.90), flat("10:00", 50.00)]
    broker, clock = make_broker(bars)
    entry = entered(broker, clock)
    _, stop = broker.submit_oco(*protective_exit(DAY, ABC, 100, entry.avg_fill_price, TRAILING))

    clock.sleep_until(at("09:40"))

    assert broker.order(stop.client_order_id).avg_fill_price == Decimal("50.00")


def test_trailing_stop_survives_a_new_broker_on_the_same_store(make_broker: BrokerFactory, store: Store) -> None:
    broker, clock = make_broker(BARS)
    entry = entered(broker, clock)
    _, stop = broker.submit_oco(*protective_exit(DAY, ABC, 100, entry.avg_fill_price, TRAILING))
    clock.sleep_until(at("09:31", 30))
    broker.close()

    reopened = PaperBroker(Store(store.path), FakeMarket(BARS), SimClock(at("09:40")), DAY)

    order = reopened.order(stop.client_order_id)
    assert (order.intent.trail_percent, order.status, order.avg_fill_price) == (
        Decimal(1),
        OrderStatus.FILLED,
        Decimal("50.29"),
    )


@pytest.mark.parametrize("gap", [False, True])
def test_paper_broker_stepper_and_engine_agree_on_the_trailing_stop(make_broker: BrokerFactory, gap: bool) -> None:
    bars = [*BARS[:2], bar("09:32", 50.00, 50.10, 49.80, 49.90), flat("10:00", 50.0)] if gap else BARS
    broker, clock = make_broker(bars)
    entry = entered(broker, clock)
    _, stop = broker.submit_oco(*protective_exit(DAY, ABC, 100, entry.avg_fill_price, TRAILING))
    clock.sleep_until(at("09:40"))
    paper = broker.order(stop.client_order_id).avg_fill_price

    state = ExitState.opened(TRAILING, entry.avg_fill_price, 570, 945)
    for b in bars:
        minute = b["ts"].hour * 60 + b["ts"].minute
        state, decision = step(
            state, ExitBar(minute, *(price_to_units(Decimal(str(b[k]))) for k in ("open", "high", "low")))
        )
        if decision.code != ExitCode.NONE:
            break
    prices = {k: to_units(np.array([b[k] for b in bars])) for k in ("open", "high", "low", "close")}
    minutes = np.array([b["ts"].hour * 60 + b["ts"].minute for b in bars], dtype=np.int32)
    engine = replay_sessions(SessionBars(np.array([0]), minutes, **prices), np.array([100]), 945, TRAILING)

    assert decision.code == ExitCode.STOP
    assert price_to_units(paper) == decision.price == int(engine.exit_price[0])
