"""A live pre-market scan through the real flow, with the fake Alpaca data API as the market."""

from __future__ import annotations

from datetime import date, datetime, time

import pytest

from openbell import calendar
from openbell.clock import SimClock
from openbell.store import Store
from tests.adapters.alpaca.alpaca_support import API_KEY, SECRET_KEY
from tests.fakes.fake_alpaca_data import FakeAlpacaData

pytestmark = pytest.mark.slow

DAY = date(2025, 3, 7)
PRIOR_CLOSE = {"GAP": 20.0, "FLAT": 50.0, "QUIET": 80.0}
OPEN = {"GAP": 21.0, "FLAT": 50.1, "QUIET": 80.0}  # GAP opens 5% up


def _at(day: date, hhmm: str) -> datetime:
    return datetime.combine(day, time.fromisoformat(hhmm), tzinfo=calendar.NEW_YORK)


@pytest.fixture
def market():
    server = FakeAlpacaData(SimClock(_at(DAY, "09:45")), api_key=API_KEY, secret_key=SECRET_KEY)
    history = calendar.sessions_between(date(2025, 1, 2), calendar.previous_session(DAY))
    for symbol, close in PRIOR_CLOSE.items():
        for session in history:
            server.add_bar("1Day", symbol, _at(session, "00:00"), close, close * 1.01, close * 0.99, close, 2_000_000)
        server.add_bar("1Min", symbol, _at(DAY, "09:30"), OPEN[symbol], OPEN[symbol], OPEN[symbol], OPEN[symbol], 50_000)
    server.set_movers([{"symbol": s, "percent_change": 1.0, "change": 0.1, "price": OPEN[s]} for s in PRIOR_CLOSE],
                      last_updated=_at(DAY, "09:31"))  # fmt: skip
    yield server.start()
    server.stop()


def test_a_live_scan_takes_its_universe_from_the_movers_and_finds_the_gapper(prefect_harness, data_dir, market, monkeypatch):
    from openbell.flows.premarket_scan import premarket_scan

    monkeypatch.setenv("OPENBELL_BROKER__KIND", "alpaca")
    monkeypatch.setenv("OPENBELL_BROKER__ALPACA__API_KEY", API_KEY)
    monkeypatch.setenv("OPENBELL_BROKER__ALPACA__SECRET_KEY", SECRET_KEY)
    monkeypatch.setenv("OPENBELL_BROKER__ALPACA__DATA_URL_OVERRIDE", market.url)

    passed = premarket_scan(DAY, mode="live")

    rows = Store(data_dir / "openbell.ducklake").query(
        "SELECT symbol, round(gap_pct, 2), passed FROM live.candidates WHERE trade_date = ? ORDER BY symbol", [DAY]
    )
    assert passed == 1
    assert rows == [("FLAT", 0.2, False), ("GAP", 5.0, True), ("QUIET", 0.0, False)]
