"""Fixtures for the Interactive Brokers adapter: a fake TWS on loopback, a simulated clock, adapters wired to both."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import datetime
from decimal import Decimal

import pytest

from openbell.clock import SimClock
from openbell.config import BrokerSettings, IbkrSettings, Settings
from openbell.venues.ibkr import IbkrBroker
from tests.adapters.ibkr.ibkr_support import DAY, NY
from tests.fakes.fake_tws import FakeTws, Holding

CLIENT_ID = 17


@pytest.fixture
def clock() -> SimClock:
    return SimClock(datetime(2025, 3, 7, 9, 20, tzinfo=NY))


@pytest.fixture
def make_tws(clock) -> Iterator[Callable[..., FakeTws]]:
    """Start fake TWS servers (FakeTws keyword arguments); all stopped at the end."""
    started: list[FakeTws] = []

    def make(**kwargs) -> FakeTws:
        server = FakeTws(clock.now, **kwargs).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()
    assert [s.errors for s in started if s.errors] == [], "the fake TWS failed"
    assert [s.unhandled for s in started if s.unhandled] == [], "ib_async sent requests the fake does not know"


@pytest.fixture
def tws(make_tws) -> FakeTws:
    """A paper account (DU1234567) that already holds 100 IBM bought at 140.00 before openbell ran."""
    return make_tws(holdings=(Holding("IBM", Decimal(100), Decimal("140.00")),))


def _settings(port: int | None, client_id: int = CLIENT_ID, **top) -> Settings:
    ibkr = IbkrSettings(port=port, client_id=client_id, connect_timeout_s=2.0)
    return Settings(broker=BrokerSettings(kind="ibkr", ibkr=ibkr), **top)


@pytest.fixture
def settings_for() -> Callable[..., Settings]:
    """Settings for an IBKR connection: settings_for(port, client_id=17, trading_mode=..., ...)."""
    return _settings


@pytest.fixture
def connect(tws, clock) -> Iterator[Callable[..., IbkrBroker]]:
    """Make IbkrBrokers on the fake TWS with short timeouts; all closed at the end."""
    made: list[IbkrBroker] = []

    def make(client_id: int = CLIENT_ID, *, server: FakeTws | None = None, **kwargs) -> IbkrBroker:
        options = {"request_timeout_s": 5.0, "ack_timeout_s": 1.0, "reconnect_delays_s": (0.1, 0.2, 0.5),
                   "connect_attempts": 3} | kwargs  # fmt: skip
        broker = IbkrBroker(_settings((server or tws).port, client_id), clock, DAY, **options)
        made.append(broker)
        return broker

    yield make
    for broker in made:
        broker.close()


@pytest.fixture(autouse=True)
def every_message_decodes(caplog) -> Iterator[None]:
    """Fail a test whose fake sent a message ib_async could not decode (its decoder only logs the error)."""
    caplog.set_level(logging.ERROR, logger="ib_async.Decoder")
    yield
    broken = [r.getMessage() for r in caplog.records if r.name == "ib_async.Decoder"]
    assert broken == [], "ib_async could not decode what the fake sent"
