"""IbkrMarketData end to end: the real ib_async client over a real socket to the fake TWS's market data."""

from __future__ import annotations

import logging
import math
import socket
import time as wall
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from openbell.errors import ConfigError, TransientError
from openbell.venues.ibkr.marketdata import HistoricalPacingError, HistoryPacing, IbkrMarketData
from openbell.venues.marketdata import MarketData
from tests.adapters.protocol_dtypes import DAILY_DTYPES, MINUTE_DTYPES
from tests.fakes.fake_tws import DEFAULT_SYMBOLS, FakeTws

NY = ZoneInfo("America/New_York")
DAY = date(2025, 3, 7)  # the conftest's clock starts at 09:20 on this Friday
HISTORY = [date(2025, 2, 28), date(2025, 3, 3), date(2025, 3, 4), date(2025, 3, 5), date(2025, 3, 6)]
SYMBOLS = DEFAULT_SYMBOLS | {"TSLA": 76792991, "GME": 36285627}
UNPACED = HistoryPacing(min_gap_s=0.0)


def at(hhmm: str, day: date = DAY) -> datetime:
    hour, minute = map(int, hhmm.split(":"))
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=NY)


def fill_market(tws: FakeTws) -> None:
    """Daily history before DAY, DAY's minute bars (extended hours too) and quotes as at 09:20 on DAY."""
    for n, day in enumerate(HISTORY):
        tws.add_daily_bar("ABC", day, 50 + n, 51 + n, 49.5 + n, 50.5 + n, 1_200_000)
        tws.add_daily_bar("XYZ", day, 20 + n, 20.8 + n, 19.6 + n, 20.4 + n, 800_000)
    tws.add_daily_bar("ABC", DAY, 60.0, 61.0, 59.0, 60.5, 300_000)  # today's bar, still in progress at 09:20
    for hhmm, price in [("04:00", 54.0), ("09:29", 54.9), ("09:30", 55.0), ("09:31", 55.2), ("09:33", 55.1),
                        ("15:59", 56.0), ("16:00", 56.1), ("19:59", 55.8)]:  # fmt: skip
        tws.add_minute_bar("ABC", at(hhmm), price, price + 0.2, price - 0.2, price + 0.1, 10_000)
    tws.add_minute_bar("XYZ", at("09:30"), 24.0, 24.3, 23.9, 24.2, 75_000)
    tws.add_minute_bar("XYZ", at("09:31"), 24.2, 24.4, 24.1, 24.3, 30_000)
    tws.set_quote("ABC", last=55.4, bid=55.3, ask=55.5, close=54.5, volume=120_000, last_time=at("09:19"))
    tws.set_quote("XYZ", last=24.5, bid=-1.0, ask=24.6, close=24.5, volume=0, last_time=at("19:58", HISTORY[-1]))
    tws.set_quote("IBM", last=251.0, close=250.0)  # no trade time, no quotes, no volume
    tws.set_scanner(["GME", "TSLA", "ABC"])
    tws.set_quote("GME", last=27.5, close=20.0)


@pytest.fixture
def market(make_tws) -> FakeTws:
    tws = make_tws(symbols=SYMBOLS)
    fill_market(tws)
    return tws


@pytest.fixture
def open_source(market, clock, settings_for) -> Iterator[Callable[..., IbkrMarketData]]:
    """Make IbkrMarketData on the fake with short timeouts and no pacing gap; all closed at the end."""
    made: list[IbkrMarketData] = []

    def make(**options) -> IbkrMarketData:
        options = {"request_timeout_s": 2.0, "pacing": UNPACED, "reconnect_delays_s": (0.05,)} | options
        source = IbkrMarketData(settings_for(market.port), clock, **options)
        made.append(source)
        return source

    yield make
    for source in made:
        source.close()


@pytest.fixture
def source(open_source) -> IbkrMarketData:
    return open_source(universe=["XYZ", "ABC"])


# -- the MarketData protocol --------------------------------------------------------------------


def test_source_satisfies_the_marketdata_protocol(source):
    assert isinstance(source, MarketData)


def test_daily_bars_have_the_protocol_columns_dtypes_and_order(source, market):
    bars = source.daily_bars(HISTORY[0], HISTORY[-1], ["XYZ", "ABC"])

    assert bars.dtypes.astype(str).to_dict() == DAILY_DTYPES
    assert list(zip(bars["symbol"], bars["date"], strict=True)) == [(s, d) for s in ("ABC", "XYZ") for d in HISTORY]
    assert all(type(d) is date for d in bars["date"])
    assert bars.iloc[0][["open", "high", "low", "close", "volume"]].tolist() == [50.0, 51.0, 49.5, 50.5, 1_200_000]
    request = market.history_requests[0]
    assert (request.bar_size, request.what_to_show, request.use_rth, request.format_date) == ("1 day", "TRADES", True, 1)


def test_daily_bars_keep_the_requested_dates_and_leave_out_a_session_in_progress(source):
    window = source.daily_bars(HISTORY[1], HISTORY[3], ["ABC"])
    through_today = source.daily_bars(HISTORY[-1], DAY, ["ABC"])

    assert window["date"].tolist() == HISTORY[1:4]
    assert through_today["date"].tolist() == [HISTORY[-1]]  # DAY's bar is not final at 09:20


def test_minute_bars_keep_regular_hours_in_new_york_time(source, market, clock):
    clock.sleep_until(at("17:00"))

    bars = source.minute_bars(DAY, ["XYZ", "ABC"])

    assert bars.dtypes.astype(str).to_dict() == MINUTE_DTYPES
    assert list(zip(bars["symbol"], bars["ts"], strict=True)) == [
        ("ABC", at("09:30")), ("ABC", at("09:31")), ("ABC", at("09:33")), ("ABC", at("15:59")),  # 09:32 stays missing
        ("XYZ", at("09:30")), ("XYZ", at("09:31")),
    ]  # fmt: skip
    assert str(bars["ts"].dt.tz) == "America/New_York"
    request = market.history_requests[0]
    assert (request.bar_size, request.duration, request.use_rth) == ("1 min", "23400 S", True)


def test_bad_bars_are_dropped_and_listed_with_their_reason(source, market, clock):
    market.add_minute_bar("XYZ", at("09:32"), 24.3, 24.1, 24.4, 24.2, 9_000)  # high below low
    market.add_minute_bar("XYZ", at("09:33"), 24.3, 24.5, 24.2, 24.4, -1)  # IB's -1: no volume known
    clock.sleep_until(at("17:00"))

    bars = source.minute_bars(DAY, ["XYZ"])

    assert [t.strftime("%H:%M") for t in bars["ts"]] == ["09:30", "09:31"]
    listed = source.rejected_rows[["kind", "symbol", "at", "reason"]]
    assert [(k, s, f"{a:%H:%M}", r) for k, s, a, r in listed.itertuples(index=False)] == [
        ("minute", "XYZ", "09:32", "high below low"),
        ("minute", "XYZ", "09:33", "negative volume"),
    ]


def test_the_minute_in_progress_is_left_out(source, clock):
    clock.sleep_until(at("09:31") + timedelta(seconds=30))

    bars = source.minute_bars(DAY, ["ABC"])

    assert bars["ts"].tolist() == [at("09:30")]


def test_minute_bars_before_the_open_are_empty_without_asking_ib(source, market):
    bars = source.minute_bars(DAY, ["ABC"])

    assert bars.empty and bars.dtypes.astype(str).to_dict() == MINUTE_DTYPES
    assert market.history_requests == []


def test_unknown_symbol_is_absent_and_logged_once(source, market, caplog):
    caplog.set_level(logging.WARNING, logger="openbell.venues.ibkr.marketdata")

    first = source.daily_bars(HISTORY[0], HISTORY[-1], ["ABC", "NOPE"])
    second = source.daily_bars(HISTORY[0], HISTORY[1], ["NOPE"])

    assert set(first["symbol"]) == {"ABC"} and second.empty
    assert market.contract_requests.count("NOPE") == 1
    ours = [r.getMessage() for r in caplog.records if r.name == "openbell.venues.ibkr.marketdata"]
    assert sum("NOPE" in message for message in ours) == 1


def test_contracts_are_qualified_once_and_finished_history_asked_once(source, market):
    source.daily_bars(HISTORY[0], HISTORY[-1], ["ABC"])
    again = source.daily_bars(HISTORY[0], HISTORY[-1], ["ABC"])

    assert market.contract_requests == ["ABC"]
    assert len(market.history_requests) == 1
    assert len(again) == len(HISTORY)


def test_a_symbol_without_bars_is_absent(source, clock):
    clock.sleep_until(at("17:00"))

    bars = source.minute_bars(DAY, ["ABC", "IBM"])  # IB answers IBM with 162 "HMDS query returned no data"

    assert set(bars["symbol"]) == {"ABC"}


# -- pacing ---------------------------------------------------------------------------------------


def test_ib_pacing_violation_is_a_transient_error_with_a_retry_after(open_source, market):
    source = open_source(pacing=HistoryPacing(min_gap_s=0.0, cooldown_s=0.3))
    market.fail_next_history()  # error 162: pacing violation

    with pytest.raises(HistoricalPacingError) as raised:
        source.daily_bars(HISTORY[0], HISTORY[-1], ["ABC"])
    with pytest.raises(HistoricalPacingError):  # held back during the cooldown: not even sent
        source.daily_bars(HISTORY[0], HISTORY[-1], ["ABC"])
    sent_meanwhile = len(market.history_requests)
    wall.sleep(raised.value.retry_after_s)
    bars = source.daily_bars(HISTORY[0], HISTORY[-1], ["ABC"])

    assert isinstance(raised.value, TransientError)
    assert raised.value.retry_after_s == pytest.approx(0.3)
    assert "retry after" in str(raised.value)
    assert sent_meanwhile == 1
    assert len(bars) == len(HISTORY)


def test_requests_beyond_the_pacing_window_are_refused_with_the_wait(open_source, market):
    source = open_source(pacing=HistoryPacing(requests=1, window_s=30.0, min_gap_s=0.0, max_wait_s=0.1))

    with pytest.raises(HistoricalPacingError) as raised:
        source.daily_bars(HISTORY[0], HISTORY[-1], ["ABC", "XYZ"])

    assert [r.symbol for r in market.history_requests] == ["ABC"]
    assert 29.0 < raised.value.retry_after_s <= 30.0


def test_requests_wait_for_room_in_the_pacing_window(open_source, market):
    source = open_source(pacing=HistoryPacing(requests=2, window_s=0.4, min_gap_s=0.0))
    started = wall.monotonic()

    bars = source.daily_bars(HISTORY[0], HISTORY[-1], ["ABC", "TSLA", "XYZ"])  # TSLA has no bars

    assert wall.monotonic() - started >= 0.35
    assert set(bars["symbol"]) == {"ABC", "XYZ"}


def test_missing_historical_data_permission_is_a_config_error(source, market):
    market.fail_next_history(162, "Historical Market Data Service error message:No market data permissions for NYSE STK")

    with pytest.raises(ConfigError, match="Market Data Subscriptions"):
        source.daily_bars(HISTORY[0], HISTORY[-1], ["XYZ"])


# -- snapshots, movers, opening prints ------------------------------------------------------------


def test_snapshots_give_last_bid_ask_previous_close_and_volume(source, market):
    snaps = source.snapshots(["XYZ", "IBM", "ABC", "NOPE"])

    assert snaps.dtypes.astype(str).to_dict() == {
        "symbol": "str",
        "last_price": "float64",
        "bid": "float64",
        "ask": "float64",
        "prev_close": "float64",
        "day_volume": "int64",
    }
    assert snaps["symbol"].tolist() == ["ABC", "IBM", "XYZ"]
    abc, ibm, xyz = (row for _, row in snaps.iterrows())
    assert abc.drop("symbol").tolist() == [55.4, 55.3, 55.5, 54.5, 120_000]
    assert math.isnan(ibm["bid"]) and math.isnan(ibm["ask"]) and ibm["day_volume"] == 0
    assert math.isnan(xyz["bid"])  # IB's -1: an empty side of the book
    assert market.snapshot_requests == ["ABC", "IBM", "XYZ"]


def test_snapshots_forget_what_an_earlier_snapshot_said(source, market):
    source.snapshots(["ABC"])
    market.set_quote("ABC", last=55.6)

    snaps = source.snapshots(["ABC"])

    assert snaps.iloc[0]["last_price"] == 55.6 and math.isnan(snaps.iloc[0]["bid"])


def test_missing_market_data_subscription_is_a_config_error_naming_the_fix(source, market):
    market.refuse_market_data(354)

    with pytest.raises(ConfigError) as raised:
        source.snapshots(["ABC"])

    assert "354" in str(raised.value)
    assert "US Equity and Options Add-On Streaming Bundle" in str(raised.value)
    assert "delayed=True" in str(raised.value) and "reqMarketDataType(3)" in str(raised.value)


def test_delayed_data_when_asked_for(open_source, market):
    source = open_source(delayed=True)
    market.refuse_market_data(10167, "Requested market data is not subscribed. Displaying delayed market data.")

    snaps = source.snapshots(["ABC"])

    assert market.market_data_type == 3
    assert snaps.iloc[0]["last_price"] == 55.4


def test_movers_come_from_the_scanner_in_its_order_with_prices_from_snapshots(source, market):
    movers = source.movers(top=2)

    assert movers.dtypes.astype(str).to_dict() == {"symbol": "str", "percent_change": "float64", "price": "float64"}
    assert movers["symbol"].tolist() == ["GME", "TSLA"]
    assert movers.iloc[0]["percent_change"] == pytest.approx(37.5) and movers.iloc[0]["price"] == 27.5
    assert math.isnan(movers.iloc[1]["percent_change"]) and math.isnan(movers.iloc[1]["price"])  # no quote for TSLA
    assert market.scanner_requests == [("STK", "STK.US.MAJOR", "TOP_PERC_GAIN", 2)]
    assert [kind for kind, _ in market.cancelled] == ["scanner"]
    assert "GME" not in market.contract_requests  # the scanner's contract is used as it is


def test_movers_without_a_subscription_have_no_prices(source, market):
    market.refuse_market_data(354)

    movers = source.movers()

    assert movers["symbol"].tolist() == ["GME", "TSLA", "ABC"]
    assert movers[["percent_change", "price"]].isna().all().all()


def test_movers_top_outside_one_to_fifty_is_a_config_error(source):
    with pytest.raises(ConfigError, match="1..50"):
        source.movers(top=51)


def test_opening_prints_before_the_open_are_todays_last_price_and_volume(source, market):
    prints = source.opening_prints(DAY, ["ABC", "XYZ", "IBM"])

    assert prints.dtypes.astype(str).to_dict() == {"symbol": "str", "open": "float64", "volume": "int64"}
    # XYZ last traded yesterday: absent; IBM has no trade time: its last price is taken as it is
    assert list(prints.itertuples(index=False, name=None)) == [("ABC", 55.4, 120_000), ("IBM", 251.0, 0)]
    assert market.history_requests == []


def test_opening_prints_from_the_open_on_are_the_0930_bars(source, market, clock):
    clock.sleep_until(at("09:45"))

    prints = source.opening_prints(DAY, ["XYZ", "ABC"])

    assert list(prints.itertuples(index=False, name=None)) == [("ABC", 55.0, 10_000), ("XYZ", 24.0, 75_000)]
    assert {(r.duration, r.bar_size) for r in market.history_requests} == {("60 S", "1 min")}
    assert market.snapshot_requests == []


def test_opening_prints_of_a_later_day_are_a_config_error(source):
    with pytest.raises(ConfigError, match="ask on the morning of 2025-03-10"):
        source.opening_prints(date(2025, 3, 10), ["ABC"])


def test_symbols_is_the_universe(source, open_source):
    assert source.symbols() == ["ABC", "XYZ"]
    with pytest.raises(ConfigError, match="universe"):
        open_source().symbols()


def test_symbols_none_means_the_universe(source, clock):
    clock.sleep_until(at("17:00"))

    bars = source.minute_bars(DAY)

    assert set(bars["symbol"]) == {"ABC", "XYZ"}


# -- the connection -------------------------------------------------------------------------------


def test_no_tws_listening_is_a_transient_error(clock, settings_for):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    with IbkrMarketData(settings_for(free_port), clock, connect_attempts=2, reconnect_delays_s=(0.05,)) as source:
        with pytest.raises(TransientError, match="could not connect"):
            source.snapshots(["ABC"])


def test_market_data_uses_its_own_client_id_next_to_the_broker(source, connect, market):
    connect(server=market)  # the broker, client id 17

    source.snapshots(["ABC"])

    assert sorted(market.clients()) == [17, 18]


def test_reconnects_on_the_next_call_after_the_connection_dropped(source, market):
    source.snapshots(["ABC"])
    market.drop_connections()

    snaps = source.snapshots(["ABC"])

    assert snaps["symbol"].tolist() == ["ABC"]
    assert market.connections == 2


def test_frames_concatenate_with_the_replay_frames(source, clock):
    clock.sleep_until(at("17:00"))
    bars = source.minute_bars(DAY, ["ABC"])

    both = pd.concat([bars, bars], ignore_index=True)

    assert both["ts"].dtype == bars["ts"].dtype
