"""AlpacaMarketData against the fake market-data server: alpaca-py's real data clients over a real socket."""

from __future__ import annotations

import logging
import math
import traceback
from collections.abc import Callable, Iterator
from datetime import date, datetime, time

import pandas as pd
import pytest

from openbell.calendar import NEW_YORK
from openbell.clock import SimClock
from openbell.errors import ConfigError, DataQualityError, TransientError
from openbell.venues.alpaca.marketdata import AlpacaMarketData
from openbell.venues.marketdata import MarketData
from tests.adapters.alpaca.alpaca_support import API_KEY, DAY, SECRET_KEY, alpaca_settings, at
from tests.adapters.protocol_dtypes import DAILY_DTYPES, MINUTE_DTYPES
from tests.fakes.fake_alpaca_data import FakeAlpacaData, bar, quote, trade

FAST = {"timeout_s": 0.5, "retry_wait_s": 0.05}
HISTORY = [date(2025, 2, 28), date(2025, 3, 3), date(2025, 3, 4), date(2025, 3, 5), date(2025, 3, 6)]
HALF_DAY = date(2025, 11, 28)  # the day after Thanksgiving closes at 13:00


def midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), NEW_YORK)


def fill_market(fake: FakeAlpacaData) -> None:
    """Three symbols: daily history before DAY, DAY's minute bars, and snapshots as at 09:00 on DAY."""
    for n, day in enumerate(HISTORY):
        fake.add_bar("1Day", "AAPL", midnight(day), 230 + n, 233 + n, 229 + n, 231 + n, 50_000_000)
        fake.add_bar("1Day", "MSFT", midnight(day), 380 + n, 384 + n, 379 + n, 381 + n, 20_000_000)
        fake.add_bar("1Day", "TSLA", midnight(day), 250 + n, 262 + n, 248 + n, 255 + n, 90_000_000)
    for hhmm, price in [("04:00", 238.0), ("09:29", 240.9), ("09:30", 241.0), ("09:31", 241.2), ("09:33", 241.1),
                        ("15:59", 243.0), ("16:00", 243.1), ("19:59", 242.0)]:  # fmt: skip
        fake.add_bar("1Min", "AAPL", at(hhmm), price, price + 0.2, price - 0.2, price + 0.1, 10_000)
    fake.add_bar("1Min", "MSFT", at("09:30"), 390.0, 390.5, 389.5, 390.2, 75_000)
    fake.add_bar("1Min", "MSFT", at("09:31"), 390.2, 390.4, 389.9, 390.0, 30_000)
    fake.add_bar("1Min", "TSLA", at("09:35"), 270.0, 271.0, 269.0, 270.5, 40_000)
    for hhmm in ("12:59", "13:00", "13:30"):
        fake.add_bar("1Min", "AAPL", at(hhmm, HALF_DAY), 230.0, 230.2, 229.8, 230.1, 5_000)

    yesterday, before = HISTORY[-1], HISTORY[-2]
    fake.set_snapshot(
        "AAPL",  # traded this morning; Alpaca already has a daily bar for today
        latestTrade=trade("2025-03-07T13:59:58.123456789Z", 241.5),  # 08:59:58 New York, in Alpaca's nanoseconds
        latestQuote=quote(at("08:59"), 241.4, 241.6),
        minuteBar=bar(at("08:58"), 241.3, 241.6, 241.2, 241.5, 3_000),
        dailyBar=bar(midnight(DAY), 239.0, 241.8, 238.0, 241.5, 120_000),
        prevDailyBar=bar(midnight(yesterday), 234.0, 237.0, 233.0, 235.0, 50_000_000),
    )
    fake.set_snapshot(
        "MSFT",  # last traded yesterday after hours: no indication today; the daily bar is yesterday's
        latestTrade=trade(datetime(2025, 3, 6, 19, 58, tzinfo=NEW_YORK), 390.0),
        latestQuote=quote(at("08:59"), 0, 391.0),
        dailyBar=bar(midnight(yesterday), 385.0, 390.0, 384.0, 389.5, 20_000_000),
        prevDailyBar=bar(midnight(before), 379.0, 381.0, 378.0, 380.0, 21_000_000),
    )
    fake.set_snapshot(
        "TSLA",  # traded this morning, but no daily bar for today yet
        latestTrade=trade(at("07:15"), 270.0, size=10),
        latestQuote=None,
        dailyBar=bar(midnight(yesterday), 258.0, 262.0, 255.0, 260.0, 90_000_000),
        prevDailyBar=bar(midnight(before), 250.0, 257.0, 249.0, 254.0, 80_000_000),
    )
    fake.set_movers(
        [
            {"symbol": "TSLA", "percent_change": 3.85, "change": 10.0, "price": 270.0},
            {"symbol": "GME", "percent_change": 41.2, "change": 8.1, "price": 27.8},
            {"symbol": "AAPL", "percent_change": 2.77, "change": 6.5, "price": 241.5},
        ],
        [{"symbol": "MSFT", "percent_change": -1.2, "change": -4.7, "price": 384.8}],
        last_updated=datetime(2025, 3, 6, 16, 0, tzinfo=NEW_YORK),
    )


@pytest.fixture
def clock() -> SimClock:
    """09:00 New York on DAY: the pre-market."""
    return SimClock(at("09:00"))


@pytest.fixture
def fake(clock) -> Iterator[FakeAlpacaData]:
    server = FakeAlpacaData(clock, api_key=API_KEY, secret_key=SECRET_KEY, page_size=4)
    fill_market(server)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def open_source(fake, clock) -> Iterator[Callable[..., AlpacaMarketData]]:
    """Make an AlpacaMarketData on the fake; all are closed afterwards."""
    made: list[AlpacaMarketData] = []

    def make(settings=None, **options) -> AlpacaMarketData:
        source = AlpacaMarketData(settings or alpaca_settings(None, data_url_override=fake.url), clock, **(FAST | options))
        made.append(source)
        return source

    yield make
    for source in made:
        source.close()


@pytest.fixture
def source(open_source) -> AlpacaMarketData:
    return open_source()


def assert_keeps_keys_out(error: BaseException) -> None:
    shown = "".join(traceback.format_exception(error)) + repr(error)
    assert API_KEY not in shown and SECRET_KEY not in shown
    assert error.__cause__ is None and error.__context__ is None  # nothing chained that holds the request headers


# -- the MarketData protocol --------------------------------------------------------------------


def test_source_satisfies_the_marketdata_protocol(source):
    assert isinstance(source, MarketData)


def test_daily_bars_have_the_protocol_columns_dtypes_and_order(source):
    bars = source.daily_bars(HISTORY[0], HISTORY[-1], ["TSLA", "AAPL", "MSFT"])

    assert bars.dtypes.astype(str).to_dict() == DAILY_DTYPES
    assert list(bars.columns) == list(DAILY_DTYPES)
    assert len(bars) == 15
    assert list(bars[["symbol", "date"]].itertuples(index=False, name=None)) == sorted(
        (s, d) for s in ("AAPL", "MSFT", "TSLA") for d in HISTORY
    )
    assert all(type(d) is date for d in bars["date"])
    first = bars.iloc[0][["open", "high", "low", "close", "volume"]].tolist()
    assert first == [230.0, 233.0, 229.0, 231.0, 50_000_000]


def test_daily_bars_follow_next_page_token_to_the_last_page(fake, source):
    bars = source.daily_bars(HISTORY[0], HISTORY[-1], ["AAPL", "MSFT", "TSLA"])

    pages = fake.bar_requests()
    assert len(pages) == 4  # 15 bars, 4 to a page
    assert "page_token" not in pages[0] and all("page_token" in p for p in pages[1:])
    assert len(bars) == 15 and not bars.duplicated(["symbol", "date"]).any()


def test_daily_bars_include_both_ends_and_nothing_outside(source):
    bars = source.daily_bars(HISTORY[1], HISTORY[2], ["AAPL"])

    assert list(bars["date"]) == [HISTORY[1], HISTORY[2]]


def test_bars_are_requested_with_the_chosen_feed_and_adjustment(fake, open_source):
    open_source(feed="iex", adjustment="raw").daily_bars(HISTORY[0], HISTORY[-1], ["AAPL"])

    query = fake.bar_requests()[0]
    assert (query["timeframe"], query["feed"], query["adjustment"], query["symbols"]) == ("1Day", "iex", "raw", "AAPL")


def test_unknown_symbols_are_simply_absent(source):
    bars = source.daily_bars(HISTORY[0], HISTORY[-1], ["AAPL", "NOPE"])

    assert set(bars["symbol"]) == {"AAPL"}


def test_no_symbols_gives_an_empty_frame_with_the_protocol_dtypes(fake, source):
    bars = source.minute_bars(DAY, [])

    assert bars.empty and bars.dtypes.astype(str).to_dict() == MINUTE_DTYPES
    assert fake.requests == []


def test_minute_bars_keep_regular_hours_with_protocol_dtypes(source):
    bars = source.minute_bars(DAY, ["AAPL", "MSFT"])

    assert bars.dtypes.astype(str).to_dict() == MINUTE_DTYPES
    aapl = bars.loc[bars["symbol"] == "AAPL", "ts"]
    assert [t.strftime("%H:%M") for t in aapl] == ["09:30", "09:31", "09:33", "15:59"]  # 09:32 stays missing
    assert list(bars["symbol"]) == ["AAPL"] * 4 + ["MSFT"] * 2
    assert bars["ts"].iloc[0] == at("09:30") and str(bars["ts"].dt.tz) == "America/New_York"


def test_minute_bars_ask_only_for_the_session(fake, source):
    source.minute_bars(DAY, ["AAPL"])

    query = fake.bar_requests()[0]
    assert query["timeframe"] == "1Min"
    assert (query["start"], query["end"]) == ("2025-03-07T14:30:00+00:00", "2025-03-07T20:59:00+00:00")  # 09:30..15:59 EST


def test_minute_bars_of_a_half_day_end_at_its_early_close(source):
    bars = source.minute_bars(HALF_DAY, ["AAPL"])

    assert [t.strftime("%H:%M") for t in bars["ts"]] == ["12:59"]


def test_minute_bars_of_a_holiday_are_a_config_error(source):
    with pytest.raises(ConfigError, match="not a NYSE session"):
        source.minute_bars(date(2025, 12, 25), ["AAPL"])


def test_unusable_bars_are_dropped_with_a_warning(fake, source, caplog):
    fake.add_raw_bar("1Min", "MSFT", {"t": "2025-03-07T14:32:00Z", "o": 390.0, "h": 389.0, "l": 391.0, "c": 390.0, "v": 10})
    fake.add_raw_bar("1Min", "MSFT", {"t": "2025-03-07T14:33:00Z", "o": 390.0, "h": 391.0, "l": 389.0, "v": 10})

    with caplog.at_level(logging.WARNING, logger="openbell.venues.alpaca.marketdata"):
        bars = source.minute_bars(DAY, ["MSFT"])

    assert [t.strftime("%H:%M") for t in bars["ts"]] == ["09:30", "09:31"]
    assert "dropped 2 unusable bars" in caplog.text
    rejected = source.rejected_rows  # and listed, with the reason, for the scan's data_quality records
    assert [
        (k, s, f"{a:%H:%M}", r) for k, s, a, r in rejected[["kind", "symbol", "at", "reason"]].itertuples(index=False)
    ] == [
        ("minute", "MSFT", "09:32", "high below low"),
        ("minute", "MSFT", "09:33", "missing value"),
    ]


def test_a_repeated_minute_drops_the_symbols_day_and_says_why(fake, source):
    fake.add_raw_bar("1Min", "MSFT", {"t": "2025-03-07T14:31:00Z", "o": 391.0, "h": 392.0, "l": 390.0, "c": 391.5, "v": 7})

    bars = source.minute_bars(DAY, ["MSFT"])

    assert bars.empty  # which of the two 09:31 bars is true is unknowable: the day goes, as in a replay
    assert set(source.rejected_rows["reason"]) == {"duplicate bar"}


def test_opening_prints_before_the_open_are_todays_latest_trade_and_premarket_volume(fake, source):
    prints = source.opening_prints(DAY, ["MSFT", "TSLA", "AAPL"])

    assert prints.dtypes.astype(str).to_dict() == {"symbol": "str", "open": "float64", "volume": "int64"}
    # MSFT last traded yesterday: no indication. TSLA has no daily bar for today yet: volume 0.
    assert list(prints.itertuples(index=False, name=None)) == [("AAPL", 241.5, 120_000), ("TSLA", 270.0, 0)]
    assert [path for path, _ in fake.requests] == ["/v2/stocks/snapshots"]


def test_opening_prints_after_the_open_are_the_0930_bar(fake, source, clock):
    clock.sleep_until(at("09:45"))

    prints = source.opening_prints(DAY, ["MSFT", "TSLA", "AAPL"])

    assert list(prints.itertuples(index=False, name=None)) == [("AAPL", 241.0, 10_000), ("MSFT", 390.0, 75_000)]
    query = fake.bar_requests()[0]
    assert query["start"] == query["end"] == "2025-03-07T14:30:00+00:00"


def test_opening_prints_of_a_later_day_are_a_config_error(source):
    with pytest.raises(ConfigError, match="not known"):
        source.opening_prints(date(2025, 3, 10), ["AAPL"])


def test_symbols_none_is_a_config_error_that_points_to_movers(source):
    with pytest.raises(ConfigError, match=r"symbols=.*movers\(\)"):
        source.daily_bars(HISTORY[0], HISTORY[-1])
    with pytest.raises(ConfigError, match="universe"):
        source.symbols()


def test_a_universe_stands_for_symbols_none(open_source):
    source = open_source(universe=["TSLA", "AAPL", "TSLA"])

    assert source.symbols() == ["AAPL", "TSLA"]
    assert set(source.daily_bars(HISTORY[0], HISTORY[-1])["symbol"]) == {"AAPL", "TSLA"}


# -- live extras --------------------------------------------------------------------------------


def test_snapshots_give_last_price_quote_previous_close_and_todays_volume(source):
    snaps = source.snapshots(["TSLA", "MSFT", "AAPL", "NOPE"])

    assert snaps.dtypes.astype(str).to_dict() == {
        "symbol": "str", "last_price": "float64", "bid": "float64", "ask": "float64", "prev_close": "float64", "day_volume": "int64",
    }  # fmt: skip
    rows = {row.symbol: row for row in snaps.itertuples(index=False)}
    assert list(rows) == ["AAPL", "MSFT", "TSLA"]
    assert (rows["AAPL"].last_price, rows["AAPL"].bid, rows["AAPL"].ask) == (241.5, 241.4, 241.6)
    assert (rows["AAPL"].prev_close, rows["AAPL"].day_volume) == (235.0, 120_000)  # today's bar exists: prev is yesterday
    assert (rows["MSFT"].prev_close, rows["MSFT"].day_volume) == (389.5, 0)  # the latest daily bar is yesterday's
    assert math.isnan(rows["MSFT"].bid) and rows["MSFT"].ask == 391.0  # an empty side is NaN, not 0
    assert math.isnan(rows["TSLA"].bid) and rows["TSLA"].prev_close == 260.0


def test_movers_are_the_gainers_biggest_first(source):
    movers = source.movers(top=50)

    assert movers.dtypes.astype(str).to_dict() == {"symbol": "str", "percent_change": "float64", "price": "float64"}
    assert list(movers["symbol"]) == ["GME", "TSLA", "AAPL"]  # losers (MSFT) are left out
    assert list(movers.itertuples(index=False, name=None))[0] == ("GME", 41.2, 27.8)
    assert movers.attrs["last_updated"] == pd.Timestamp("2025-03-06 16:00", tz="America/New_York")


def test_movers_before_the_open_warn_that_they_are_the_previous_sessions(source, caplog):
    with caplog.at_level(logging.WARNING, logger="openbell.venues.alpaca.marketdata"):
        source.movers(top=5)

    assert "previous session's movers" in caplog.text


def test_movers_top_outside_the_screeners_range_is_a_config_error(fake, source):
    with pytest.raises(ConfigError, match="1..50"):
        source.movers(top=100)
    assert fake.requests == []


# -- errors -------------------------------------------------------------------------------------


def test_missing_keys_are_a_config_error_naming_the_variables(fake, open_source):
    with pytest.raises(ConfigError) as refused:
        open_source(alpaca_settings(None, data_url_override=fake.url, secret_key=None))

    assert "OPENBELL_BROKER__ALPACA__SECRET_KEY" in str(refused.value)
    assert "OPENBELL_BROKER__ALPACA__API_KEY" not in str(refused.value)


def test_wrong_keys_are_a_config_error_about_the_keys(fake, open_source):
    from pydantic import SecretStr

    source = open_source(alpaca_settings(None, data_url_override=fake.url, secret_key=SecretStr("wrong-" + SECRET_KEY)))

    with pytest.raises(ConfigError, match="OPENBELL_BROKER__ALPACA__API_KEY") as refused:
        source.daily_bars(HISTORY[0], HISTORY[-1], ["AAPL"])
    assert "HTTP 401" in str(refused.value)
    assert_keeps_keys_out(refused.value)


def test_sip_outside_the_subscription_is_a_config_error_suggesting_iex(fake, source):
    fake.plan = "free"

    with pytest.raises(ConfigError, match='feed="iex"') as refused:
        source.opening_prints(DAY, ["AAPL"])
    assert "subscription does not permit querying recent SIP data" in str(refused.value)
    assert_keeps_keys_out(refused.value)


def test_free_plan_reads_sip_history_and_iex_pre_market(fake, open_source):
    fake.plan = "free"

    history = open_source().daily_bars(HISTORY[0], HISTORY[-1], ["AAPL"])  # older than 15 minutes: allowed
    prints = open_source(feed="iex").opening_prints(DAY, ["AAPL"])

    assert len(history) == 5 and list(prints["symbol"]) == ["AAPL"]


def test_one_rate_limit_is_retried_by_alpaca_py(fake, source):
    fake.rate_limit(1)

    bars = source.daily_bars(HISTORY[0], HISTORY[0], ["AAPL"])

    assert len(bars) == 1 and len(fake.bar_requests()) == 2


def test_a_lasting_rate_limit_is_transient(fake, source):
    fake.rate_limit(10)

    with pytest.raises(TransientError, match="HTTP 429") as busy:
        source.snapshots(["AAPL"])
    assert len(fake.requests) == 4  # alpaca-py tries 1 + 3 times
    assert_keeps_keys_out(busy.value)


def test_server_down_is_transient(fake, source):
    fake.stop()

    with pytest.raises(TransientError, match="connection refused") as down:
        source.minute_bars(DAY, ["AAPL"])
    assert_keeps_keys_out(down.value)


def test_a_silent_server_times_out_as_transient(fake, open_source):
    fake.delay_s = 1.0

    with pytest.raises(TransientError, match=r"no answer within 0\.2 s") as silent:
        open_source(timeout_s=0.2).movers()
    assert_keeps_keys_out(silent.value)


def test_an_unreadable_answer_is_a_data_quality_error(fake, source):
    fake.respond = lambda path, query: (200, {"unexpected": {}})

    with pytest.raises(DataQualityError, match="could not be read") as unreadable:
        source.daily_bars(HISTORY[0], HISTORY[-1], ["AAPL"])
    assert_keeps_keys_out(unreadable.value)


def test_repr_names_the_endpoint_not_the_keys(fake, source):
    shown = repr(source)

    assert fake.url in shown and "feed=sip" in shown
    assert API_KEY not in shown and SECRET_KEY not in shown
