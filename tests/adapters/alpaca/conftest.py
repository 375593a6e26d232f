"""Fixtures for the Alpaca adapter: a simulated clock, the fake Alpaca server, and brokers talking to it."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from openbell.clock import SimClock
from openbell.venues.alpaca import AlpacaBroker
from tests.adapters.alpaca.alpaca_support import API_KEY, DAY, FAST, SECRET_KEY, alpaca_settings, at
from tests.fakes.fake_alpaca import FakeAlpaca


@pytest.fixture
def clock() -> SimClock:
    """09:00 New York on the trade date: inside the market-on-open window."""
    return SimClock(at("09:00"))


@pytest.fixture
def fake(clock) -> Iterator[FakeAlpaca]:
    server = FakeAlpaca(clock, api_key=API_KEY, secret_key=SECRET_KEY).start()
    yield server
    server.stop()


@pytest.fixture
def connect(fake, clock) -> Iterator[Callable[..., AlpacaBroker]]:
    """Make an AlpacaBroker on the fake (a new one is what a restarted flow gets); all are closed afterwards."""
    made: list[AlpacaBroker] = []

    def make(**options) -> AlpacaBroker:
        broker = AlpacaBroker(alpaca_settings(fake.url), clock, DAY, **(FAST | options))
        made.append(broker)
        return broker

    yield make
    for broker in made:
        broker.close()


@pytest.fixture
def broker(connect) -> AlpacaBroker:
    return connect()
