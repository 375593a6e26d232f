"""Tests of the synthetic market generator and the Parquet replay source (synthetic and real data)."""

from __future__ import annotations

import math
import re
from datetime import date, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from openbell.calendar import previous_session, sessions_between
from openbell.errors import ConfigError, DataQualityError
from openbell.venues.marketdata import MarketData
from openbell.venues.replay import ParquetReplaySource
from openbell.venues.synthetic import SyntheticMarket, generate_synthetic_market

NY = ZoneInfo("America/New_York")
SESSIONS = [date(2025, 3, 3), date(2025, 3, 4), date(2025, 3, 5), date(2025, 3, 6), date(2025, 3, 7)]
DAY = SESSIONS[1]
MINUTE_SCHEMA = pa.schema(
    [
        ("symbol", pa.large_string()),
        ("ts", pa.timestamp("us", tz="America/New_York")),
        ("open", pa.float64()),
        ("high", pa.float64()),
        ("low", pa.float64()),
        ("close", pa.float64()),
        ("volume", pa.int64()),
    ]
)
NEW_YORK_TS = MINUTE_SCHEMA.field("ts").type
DAILY_SCHEMA = pa.schema(
    [("date", pa.date32()) if field.name == "ts" else (field.name, field.type) for field in MINUTE_SCHEMA]
)

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
REAL_MINUTE = SHARED_DATA / "minute_bars_2018-02-16_2018-03-09.parquet"
REAL_DAILY = SHARED_DATA / "daily_bars_2017-01-03_2018-03-09.parquet"
requires_shared_data = pytest.mark.skipif(
    not (REAL_MINUTE.is_file() and REAL_DAILY.is_file()),
    reason=f"real bars not found in {SHARED_DATA} (a fresh clone has no ../shared/data)",
)


# -- fixtures and helpers ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory) -> SyntheticMarket:
    """The default synthetic market: 300 symbols, 2025-03-03 .. 2025-03-07, 60 history sessions."""
    return generate_synthetic_market(tmp_path_factory.mktemp("synthetic"))


@pytest.fixture(scope="module")
def minute(market: SyntheticMarket) -> pd.DataFrame:
    return pd.read_parquet(market.minute_path)


@pytest.fixture(scope="module")
def daily(market: SyntheticMarket) -> pd.DataFrame:
    return pd.read_parquet(market.daily_path)


@pytest.fixture
def source(market: SyntheticMarket) -> ParquetReplaySource:
    return ParquetReplaySource(market.minute_path, market.daily_path)


@pytest.fixture(scope="module")
def real_source() -> ParquetReplaySource:
    return ParquetReplaySource(REAL_MINUTE, REAL_DAILY)


def _small_market(out_dir: Path, seed: int) -> SyntheticMarket:
    return generate_synthetic_market(out_dir, seed=seed, n_symbols=30, minute_sessions=SESSIONS[:2], history_sessions=5)


def _at(day: date, hh_mm: str) -> datetime:
    return datetime.combine(day, time.fromisoformat(hh_mm), NY)


def _write_minute_file(path: Path, rows: list[tuple], ts_type: pa.DataType = NEW_YORK_TS) -> Path:
    """Write (symbol, ts, open, high, low, close, volume) rows as a minute-bar Parquet file."""
    columns = list(zip(*rows, strict=True))
    table = pa.table(
        {
            "symbol": pa.array(columns[0], pa.large_string()),
            "ts": pa.array(columns[1], ts_type),
            **{name: pa.array(columns[i], pa.float64()) for i, name in enumerate(["open", "high", "low", "close"], start=2)},
            "volume": pa.array(columns[6], pa.int64()),
        }
    )
    pq.write_table(table, path)
    return path


def _write_daily_file(path: Path) -> Path:
    pq.write_table(
        pa.table(
            {
                "symbol": pa.array(["AAA"], pa.large_string()),
                "date": pa.array([SESSIONS[0]], pa.date32()),
                "open": [10.0],
                "high": [10.5],
                "low": [9.8],
                "close": [10.2],
                "volume": pa.array([100_000], pa.int64()),
            }
        ),
        path,
    )
    return path


def _good_bar(symbol: str, hh_mm: str, price: float = 10.0) -> tuple:
    return (symbol, _at(DAY, hh_mm), price, price + 0.05, price - 0.05, price + 0.01, 1_000)


# -- synthetic market: determinism and format ----------------------------------------------------


def test_same_seed_writes_identical_bars(tmp_path: Path) -> None:
    first = _small_market(tmp_path / "a", seed=11)
    second = _small_market(tmp_path / "b", seed=11)

    pd.testing.assert_frame_equal(pd.read_parquet(first.minute_path), pd.read_parquet(second.minute_path))
    pd.testing.assert_frame_equal(pd.read_parquet(first.daily_path), pd.read_parquet(second.daily_path))
    assert first.symbols == second.symbols
    assert first.missing_opening_prints == second.missing_opening_prints


def test_another_seed_writes_a_different_market(tmp_path: Path) -> None:
    first = _small_market(tmp_path / "a", seed=11)
    other = _small_market(tmp_path / "b", seed=12)

    assert first.symbols != other.symbols
    assert not pd.read_parquet(first.minute_path).equals(pd.read_parquet(other.minute_path))


def test_synthetic_files_have_the_shared_data_schema(market: SyntheticMarket) -> None:
    assert market.minute_path.name == "minute_bars.parquet"
    assert market.daily_path.name == "daily_bars.parquet"
    assert pq.read_schema(market.minute_path).remove_metadata().equals(MINUTE_SCHEMA)
    assert pq.read_schema(market.daily_path).remove_metadata().equals(DAILY_SCHEMA)


def test_market_lists_its_minute_sessions_and_symbols(market: SyntheticMarket, minute: pd.DataFrame) -> None:
    assert market.sessions == SESSIONS
    assert sorted(minute["ts"].dt.date.unique()) == SESSIONS
    assert market.symbols == sorted(minute["symbol"].unique())
    assert len(market.symbols) == 300


def test_symbols_look_like_unique_tickers(market: SyntheticMarket) -> None:
    assert len(set(market.symbols)) == len(market.symbols)
    assert all(re.fullmatch(r"[A-Z]{3,4}", symbol) for symbol in market.symbols)


def test_minute_sessions_that_are_not_sessions_raise_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="2025-03-08"):
        generate_synthetic_market(tmp_path, n_symbols=5, minute_sessions=[date(2025, 3, 7), date(2025, 3, 8)])


# -- synthetic market: realism -------------------------------------------------------------------


@pytest.mark.parametrize("frame_name", ["minute", "daily"])
def test_bars_are_ohlc_consistent_and_tick_rounded(frame_name: str, request: pytest.FixtureRequest) -> None:
    bars: pd.DataFrame = request.getfixturevalue(frame_name)
    prices = bars[["open", "high", "low", "close"]]

    assert (prices > 0).all().all()
    assert (bars["low"] <= bars[["open", "close"]].min(axis=1)).all()
    assert (bars["high"] >= bars[["open", "close"]].max(axis=1)).all()
    assert (bars["volume"] > 0).all()
    over_a_dollar = prices.to_numpy()[prices.to_numpy() >= 1.0]
    np.testing.assert_allclose(over_a_dollar, np.round(over_a_dollar, 2), rtol=0, atol=1e-9)


def test_prices_and_volumes_span_small_caps_to_large_caps(daily: pd.DataFrame) -> None:
    per_symbol = daily.groupby("symbol").agg(close=("close", "median"), volume=("volume", "median"))

    assert 0 < (per_symbol["close"] < 5).sum() < 0.2 * len(per_symbol)
    assert per_symbol["close"].max() > 200
    assert per_symbol["volume"].min() < 1_000_000
    assert per_symbol["volume"].max() > 20_000_000


def test_full_sessions_run_from_0930_to_the_1600_closing_auction(minute: pd.DataFrame) -> None:
    per_symbol_day = minute.groupby(["symbol", minute["ts"].dt.date])["ts"].agg(["size", "min", "max"])
    full = per_symbol_day[per_symbol_day["size"] == 391]

    assert len(full) > 0.3 * len(per_symbol_day)
    assert (full["min"].dt.time == time(9, 30)).all()
    assert (full["max"].dt.time == time(16, 0)).all()
    assert minute["ts"].dt.time.between(time(9, 30), time(16, 0)).all()


def test_closing_auction_is_a_single_print(minute: pd.DataFrame) -> None:
    auction = minute[minute["ts"].dt.time == time(16, 0)]

    assert (auction["open"] == auction["close"]).all()
    assert (auction["high"] == auction["low"]).all()


def test_half_day_ends_with_the_closing_auction_at_1300(tmp_path: Path) -> None:
    day_after_thanksgiving = date(2024, 11, 29)

    market = generate_synthetic_market(
        tmp_path, n_symbols=10, minute_sessions=[day_after_thanksgiving], history_sessions=3, missing_minute_rate=0
    )

    bars = pd.read_parquet(market.minute_path)
    assert bars.groupby("symbol").size().eq(211).all()
    assert bars["ts"].max() == _at(day_after_thanksgiving, "13:00")


def test_without_close_auction_and_missing_minutes_every_symbol_has_390_bars(tmp_path: Path) -> None:
    market = generate_synthetic_market(
        tmp_path,
        n_symbols=20,
        minute_sessions=SESSIONS[:2],
        history_sessions=3,
        missing_minute_rate=0,
        include_close_auction=False,
    )

    bars = pd.read_parquet(market.minute_path)
    assert bars.groupby(["symbol", bars["ts"].dt.date]).size().eq(390).all()
    assert bars["ts"].dt.time.max() == time(15, 59)
    assert market.missing_opening_prints == []


def test_minute_volume_is_u_shaped(minute: pd.DataFrame) -> None:
    minutes_since_open = (minute["ts"].dt.hour - 9) * 60 + minute["ts"].dt.minute - 30
    mean_volume = minute.groupby(minutes_since_open)["volume"].mean()

    first_half_hour = mean_volume.loc[0:29].mean()
    last_half_hour = mean_volume.loc[361:390].mean()
    midday = mean_volume.loc[120:269].mean()
    assert first_half_hour > 1.5 * midday
    assert last_half_hour > 1.5 * midday


def test_opening_print_is_large_and_often_flat(minute: pd.DataFrame) -> None:
    opening = minute[minute["ts"].dt.time == time(9, 30)]
    second_minute = minute[minute["ts"].dt.time == time(9, 31)]
    flat = (
        (opening["open"] == opening["high"]) & (opening["low"] == opening["close"]) & (opening["open"] == opening["close"])
    )

    assert opening["volume"].mean() > 2 * second_minute["volume"].mean()
    assert 0.4 < flat.mean() < 0.8


def test_every_minute_session_has_opening_gaps_of_at_least_4_percent(source: ParquetReplaySource) -> None:
    for day in SESSIONS:
        prior = previous_session(day)
        prior_close = source.daily_bars(prior, prior).set_index("symbol")["close"]
        opening = source.opening_prints(day).set_index("symbol")["open"]

        gap = opening / prior_close.reindex(opening.index) - 1

        assert (gap.abs() >= 0.04).sum() >= 3, day
        assert (gap.abs() < 0.01).mean() > 0.85, day


def test_gapping_symbols_trade_heavier_that_day(daily: pd.DataFrame) -> None:
    bars = daily.sort_values(["symbol", "date"]).reset_index(drop=True)
    prior_close = bars.groupby("symbol")["close"].shift()
    relative_volume = bars["volume"] / bars.groupby("symbol")["volume"].transform("median")
    gapped = (bars["open"] / prior_close - 1).abs() >= 0.04

    assert relative_volume[gapped].median() > 2 * relative_volume[~gapped].median()


def test_daily_returns_have_fat_tails(daily: pd.DataFrame) -> None:
    bars = daily.sort_values(["symbol", "date"])
    returns = np.log(bars["close"] / bars.groupby("symbol")["close"].shift()).dropna()
    standardised = returns / returns.groupby(bars["symbol"]).transform("std")

    assert standardised.kurt() > 1.0  # a normal distribution has excess kurtosis 0


def test_daily_bar_summarises_that_days_minute_bars(minute: pd.DataFrame, daily: pd.DataFrame) -> None:
    from_minutes = minute.groupby(["symbol", minute["ts"].dt.date]).agg(
        open=("open", "first"), high=("high", "max"), low=("low", "min"), close=("close", "last"), volume=("volume", "sum")
    )
    from_minutes.index.names = ["symbol", "date"]

    recorded = daily.set_index(["symbol", "date"]).loc[from_minutes.index]

    pd.testing.assert_frame_equal(recorded, from_minutes)


def test_daily_history_covers_60_sessions_before_and_all_minute_sessions(daily: pd.DataFrame) -> None:
    history = sessions_between(date(2024, 11, 1), previous_session(SESSIONS[0]))[-60:]

    assert sorted(daily["date"].unique()) == history + SESSIONS
    assert daily.groupby("symbol").size().eq(65).all()


def test_missing_minutes_average_the_requested_rate_and_spare_liquid_symbols(
    minute: pd.DataFrame, daily: pd.DataFrame
) -> None:
    bars_per_symbol = minute.groupby("symbol").size()
    missing_share = 1 - bars_per_symbol / (391 * len(SESSIONS))
    average_volume = daily.groupby("symbol")["volume"].mean()
    most_liquid_quarter = average_volume[average_volume >= average_volume.quantile(0.75)].index

    assert missing_share.mean() == pytest.approx(0.03, abs=0.005)
    assert missing_share[most_liquid_quarter].max() == 0


def test_only_the_listed_symbol_days_lack_an_opening_print(market: SyntheticMarket, minute: pd.DataFrame) -> None:
    symbol_days = set(zip(minute["symbol"], minute["ts"].dt.date, strict=True))
    opening = minute[minute["ts"].dt.time == time(9, 30)]
    with_opening_print = set(zip(opening["symbol"], opening["ts"].dt.date, strict=True))

    without = {(day, symbol) for symbol, day in symbol_days - with_opening_print}

    assert without == set(market.missing_opening_prints)
    assert len(without) == len(SESSIONS)


# -- replay source over the synthetic market -----------------------------------------------------


def test_replay_source_satisfies_the_market_data_protocol(source: ParquetReplaySource) -> None:
    assert isinstance(source, MarketData)


def test_minute_bars_have_the_documented_columns_dtypes_and_order(source: ParquetReplaySource) -> None:
    bars = source.minute_bars(DAY)

    assert list(bars.columns) == ["symbol", "ts", "open", "high", "low", "close", "volume"]
    assert str(bars["ts"].dt.tz) == "America/New_York"
    assert all(bars[name].dtype == np.float64 for name in ["open", "high", "low", "close"])
    assert bars["volume"].dtype == np.int64
    assert bars.equals(bars.sort_values(["symbol", "ts"]).reset_index(drop=True))


def test_minute_bars_hold_only_the_requested_day(source: ParquetReplaySource, minute: pd.DataFrame) -> None:
    bars = source.minute_bars(DAY)

    assert set(bars["ts"].dt.date) == {DAY}
    assert len(bars) == (minute["ts"].dt.date == DAY).sum()


def test_daily_bars_have_the_documented_columns_dtypes_and_inclusive_range(source: ParquetReplaySource) -> None:
    bars = source.daily_bars(SESSIONS[1], SESSIONS[3])

    assert list(bars.columns) == ["symbol", "date", "open", "high", "low", "close", "volume"]
    assert all(type(value) is date for value in bars["date"])
    assert all(bars[name].dtype == np.float64 for name in ["open", "high", "low", "close"])
    assert bars["volume"].dtype == np.int64
    assert sorted(bars["date"].unique()) == SESSIONS[1:4]
    assert bars.equals(bars.sort_values(["symbol", "date"]).reset_index(drop=True))


def test_opening_prints_are_the_0930_bars(source: ParquetReplaySource, minute: pd.DataFrame) -> None:
    bars_at_open = minute[minute["ts"] == _at(DAY, "09:30")]
    expected = bars_at_open[["symbol", "open", "volume"]].sort_values("symbol").reset_index(drop=True)

    opening = source.opening_prints(DAY)

    pd.testing.assert_frame_equal(opening, expected)


def test_symbol_without_0930_bar_has_no_opening_print(source: ParquetReplaySource, market: SyntheticMarket) -> None:
    day, symbol = market.missing_opening_prints[0]

    opening = source.opening_prints(day, [symbol])

    assert opening.empty
    assert not source.minute_bars(day, [symbol]).empty


def test_unknown_symbols_are_absent_from_results(source: ParquetReplaySource, market: SyntheticMarket) -> None:
    known = market.symbols[0]

    assert set(source.minute_bars(DAY, [known, "ZZZZZ"])["symbol"]) == {known}
    assert set(source.daily_bars(DAY, DAY, [known, "ZZZZZ"])["symbol"]) == {known}
    assert set(source.opening_prints(DAY, [known, "ZZZZZ"])["symbol"]) == {known}


def test_symbols_and_sessions_list_what_the_minute_file_holds(source: ParquetReplaySource, market: SyntheticMarket) -> None:
    assert source.symbols() == market.symbols
    assert source.sessions() == SESSIONS


def test_changing_a_returned_frame_leaves_later_results_untouched(source: ParquetReplaySource) -> None:
    first = source.minute_bars(DAY)
    expected = first.copy()

    first["close"] = 0.0
    first["extra"] = 1

    pd.testing.assert_frame_equal(source.minute_bars(DAY), expected)


def test_day_without_minute_bars_raises_data_quality_error(source: ParquetReplaySource) -> None:
    with pytest.raises(DataQualityError, match="no minute bars for 2025-03-10"):
        source.minute_bars(date(2025, 3, 10))


# -- replay source: input validation -------------------------------------------------------------


def test_missing_minute_file_raises_config_error_naming_path_and_argument(tmp_path: Path) -> None:
    missing = tmp_path / "nope.parquet"
    source = ParquetReplaySource(missing, _write_daily_file(tmp_path / "daily.parquet"))

    with pytest.raises(ConfigError, match="minute_path=") as raised:
        source.minute_bars(DAY)

    assert str(missing) in str(raised.value)


def test_missing_daily_file_raises_config_error(tmp_path: Path) -> None:
    source = ParquetReplaySource(tmp_path / "minute.parquet", tmp_path / "daily.parquet")

    with pytest.raises(ConfigError, match="daily_path="):
        source.daily_bars(SESSIONS[0], SESSIONS[1])


def test_file_without_required_columns_raises_config_error_listing_them(tmp_path: Path) -> None:
    path = tmp_path / "minute.parquet"
    pq.write_table(pa.table({"symbol": ["AAA"], "timestamp": [_at(DAY, "09:30")], "price": [10.0]}), path)
    source = ParquetReplaySource(path, _write_daily_file(tmp_path / "daily.parquet"))

    with pytest.raises(ConfigError) as raised:
        source.minute_bars(DAY)

    message = str(raised.value)
    assert "lacks column(s) ts, open, high, low, close, volume" in message
    assert "expected columns symbol (string), ts (timestamp with tz=America/New_York)" in message


def test_column_of_the_wrong_type_raises_config_error(tmp_path: Path) -> None:
    path = tmp_path / "daily.parquet"
    pq.write_table(
        pa.table(
            {
                "symbol": ["AAA"],
                "date": ["2025-03-03"],
                "open": [1.0],
                "high": [1.0],
                "low": [1.0],
                "close": [1.0],
                "volume": [1.5],
            }
        ),
        path,
    )
    source = ParquetReplaySource(tmp_path / "minute.parquet", path)

    with pytest.raises(ConfigError, match=r"date is string; volume is double"):
        source.daily_bars(SESSIONS[0], SESSIONS[1])


def test_naive_timestamps_raise_config_error(tmp_path: Path) -> None:
    naive_bar = ("AAA", datetime(2025, 3, 4, 9, 30), 10.0, 10.1, 9.9, 10.0, 1_000)
    path = _write_minute_file(tmp_path / "minute.parquet", [naive_bar], ts_type=pa.timestamp("us"))
    source = ParquetReplaySource(path, _write_daily_file(tmp_path / "daily.parquet"))

    with pytest.raises(ConfigError, match="ts must be tz-aware New York time"):
        source.minute_bars(DAY)


def test_utc_timestamps_are_returned_in_new_york_time(tmp_path: Path) -> None:
    path = _write_minute_file(tmp_path / "minute.parquet", [_good_bar("AAA", "09:30")], ts_type=pa.timestamp("ns", tz="UTC"))
    source = ParquetReplaySource(path, _write_daily_file(tmp_path / "daily.parquet"))

    bars = source.minute_bars(DAY)

    assert str(bars["ts"].dt.tz) == "America/New_York"
    assert bars["ts"].iloc[0] == _at(DAY, "09:30")


def test_validate_checks_both_files_at_once(tmp_path: Path) -> None:
    minute_path = _write_minute_file(tmp_path / "minute.parquet", [_good_bar("AAA", "09:30")])
    source = ParquetReplaySource(minute_path, tmp_path / "missing_daily.parquet")

    with pytest.raises(ConfigError, match="daily bars file not found"):
        source.validate()


def test_bad_rows_are_dropped_and_recorded_with_a_reason(tmp_path: Path) -> None:
    rows = [
        _good_bar("AAA", "09:30"),
        _good_bar("AAA", "09:31"),
        ("BBB", _at(DAY, "09:30"), 0.0, 10.1, 9.9, 10.0, 1_000),
        ("CCC", _at(DAY, "09:30"), 10.0, 9.8, 9.9, 9.9, 1_000),
        ("DDD", _at(DAY, "09:30"), 10.0, 10.1, 9.9, math.nan, 1_000),
        ("EEE", _at(DAY, "09:30"), 10.5, 10.1, 9.9, 10.0, 1_000),
    ]
    path = _write_minute_file(tmp_path / "minute.parquet", rows)
    source = ParquetReplaySource(path, _write_daily_file(tmp_path / "daily.parquet"))

    bars = source.minute_bars(DAY)

    assert list(bars["symbol"]) == ["AAA", "AAA"]
    reasons = source.rejected_rows.set_index("symbol")["reason"].to_dict()
    assert reasons == {
        "BBB": "non-positive price",
        "CCC": "high below low",
        "DDD": "missing value",
        "EEE": "open or close outside high-low range",
    }


def test_duplicate_minutes_reject_that_symbols_whole_day(tmp_path: Path) -> None:
    # Two bars for one minute mean two price series are mixed, as for PBR in the shared data.
    rows = [
        _good_bar("AAA", "09:30"),
        _good_bar("PBR", "09:30", 12.0),
        _good_bar("PBR", "09:31", 12.0),
        _good_bar("PBR", "09:31", 12.7),
    ]
    path = _write_minute_file(tmp_path / "minute.parquet", rows)
    source = ParquetReplaySource(path, _write_daily_file(tmp_path / "daily.parquet"))

    bars = source.minute_bars(DAY)

    assert list(bars["symbol"]) == ["AAA"]
    assert len(source.rejected_rows) == 3
    assert set(source.rejected_rows["reason"]) == {"duplicate bar"}


def test_day_with_only_bad_bars_raises_data_quality_error(tmp_path: Path) -> None:
    rows = [("AAA", _at(DAY, "09:30"), -1.0, 10.1, 9.9, 10.0, 1_000)]
    path = _write_minute_file(tmp_path / "minute.parquet", rows)
    source = ParquetReplaySource(path, _write_daily_file(tmp_path / "daily.parquet"))

    with pytest.raises(DataQualityError, match="all 1 minute bars for 2025-03-04"):
        source.minute_bars(DAY)


# -- replay source over the real shared data -----------------------------------------------------


@pytest.mark.shared_data
@requires_shared_data
def test_real_2018_03_01_minute_bars_cover_about_283_symbols(real_source: ParquetReplaySource) -> None:
    bars = real_source.minute_bars(date(2018, 3, 1))

    assert 275 <= bars["symbol"].nunique() <= 283
    assert set(bars["ts"].dt.date) == {date(2018, 3, 1)}


@pytest.mark.shared_data
@requires_shared_data
def test_real_nvax_opened_about_25_percent_above_the_prior_last_minute_close(real_source: ParquetReplaySource) -> None:
    prior_close = real_source.minute_bars(date(2018, 2, 28), ["NVAX"])["close"].iloc[-1]

    opening = real_source.opening_prints(date(2018, 3, 1), ["NVAX"])

    assert opening["open"].iloc[0] / prior_close - 1 == pytest.approx(0.25, abs=0.01)


@pytest.mark.shared_data
@requires_shared_data
def test_real_daily_window_holds_thousands_of_symbols(real_source: ParquetReplaySource) -> None:
    bars = real_source.daily_bars(date(2018, 1, 2), date(2018, 2, 28))

    assert bars["symbol"].nunique() > 7_000
    assert bars["date"].min() == date(2018, 1, 2)
    assert bars["date"].max() == date(2018, 2, 28)


@pytest.mark.shared_data
@requires_shared_data
def test_real_pbr_mixed_series_is_rejected_not_replayed(real_source: ParquetReplaySource) -> None:
    bars = real_source.minute_bars(date(2018, 3, 1))

    assert "PBR" not in set(bars["symbol"])
    rejected = real_source.rejected_rows
    assert set(rejected.loc[rejected["symbol"] == "PBR", "reason"]) == {"duplicate bar"}
