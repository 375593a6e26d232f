"""Live market data from Alpaca: the MarketData protocol over alpaca-py's REST data clients, plus snapshots and movers.

What each call asks Alpaca (data.alpaca.markets, or `broker.alpaca.data_url_override`):

    daily_bars      GET /v2/stocks/bars  timeframe=1Day, midnight New York of `start` to that of `end`
    minute_bars     GET /v2/stocks/bars  timeframe=1Min, the session's open to its last minute
    opening_prints  before the open: GET /v2/stocks/snapshots (today's latest trade, today's daily bar);
                    from the open on: the 09:30 bar from GET /v2/stocks/bars
    snapshots       GET /v2/stocks/snapshots
    movers          GET /v1beta1/screener/stocks/movers (the day's top gainers)

alpaca-py follows `next_page_token` itself; symbols go out in batches of 200 to keep URLs short.
Bars are read raw (`raw_data=True`) and turned into frames here: alpaca-py would otherwise build
one pydantic model per bar, which is slow for a few hundred symbols of minute bars.

Errors: no keys, refused keys (401/403) or a feed outside the subscription (403 "subscription does
not permit querying recent SIP data") -> ConfigError saying what to change; 429 still there after
alpaca-py's own retries, 5xx, timeouts, refused or dropped connections -> TransientError; an answer
alpaca-py cannot read -> DataQualityError. Alpaca's exceptions are never chained: their request
objects carry the API keys in their headers.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Collection, Iterator
from datetime import date, datetime, time, timedelta
from typing import Any, Literal

import pandas as pd
import requests
from alpaca.common.enums import BaseURL
from alpaca.common.exceptions import APIError
from alpaca.data.enums import Adjustment, DataFeed
from alpaca.data.historical.screener import ScreenerClient
from alpaca.data.historical.stock import StockHistoricalDataClient
from alpaca.data.models.screener import Movers
from alpaca.data.models.snapshots import Snapshot
from alpaca.data.requests import MarketMoversRequest, StockBarsRequest, StockSnapshotRequest
from alpaca.data.timeframe import TimeFrame, TimeFrameUnit
from pydantic import ValidationError

from openbell import calendar
from openbell.clock import Clock, WallClock
from openbell.config import Settings
from openbell.core.types import NEW_YORK
from openbell.errors import ConfigError, DataQualityError, OpenbellError, TransientError
from openbell.venues.alpaca.rest import KEY_ENV, SECRET_ENV, Failure, api_failure, secret, transport_failure, tuned
from openbell.venues.marketdata import (
    DAILY_COLUMNS,
    MINUTE_COLUMNS,
    MOVER_COLUMNS,
    NEW_YORK_TS,
    OPENING_PRINT_COLUMNS,
    SNAPSHOT_COLUMNS,
    RejectedRows,
    drop_bad_bars,
    protocol_frame,
    require_day_begun,
    unique_symbols,
    universe_symbols,
    wanted_symbols,
)

log = logging.getLogger(__name__)

SYMBOLS_PER_REQUEST = 200  # symbols travel in the query string: keep URLs well under common limits
MAX_MOVERS = 50  # the screener's largest `top`

Feed = Literal["sip", "iex", "delayed_sip"]
BarAdjustment = Literal["raw", "split", "dividend", "all"]

_BAR_FIELDS = {"t": "ts", "o": "open", "h": "high", "l": "low", "c": "close", "v": "volume"}


class AlpacaMarketData:
    """MarketData from Alpaca's market-data API, for live mornings and for recent history.

    Alpaca has no "whole market" bars call: pass `symbols=` (e.g. from `movers()`), or give a
    `universe` that `symbols=None` and `symbols()` then mean.

    Opening prints depend on the clock. Before the session opens they are the pre-market
    indication from snapshots: `open` is the price of the symbol's latest trade if that trade
    happened on `day` (from 00:00 New York, in practice the 04:00 pre-market), and `volume` is the
    volume of Alpaca's daily bar for `day` when the snapshot has one (else 0). Symbols that have
    not traded yet on `day` are absent. From the open on they are the open and volume of the 09:30
    minute bar, as in the replay source; until that bar is published (about 09:31) they are empty.
    With feed="iex" the 09:30 bar holds IEX trades only, not the opening auction.

    Bars are adjusted per `adjustment` (default "split": a split between yesterday and today does
    not show up as a gap). Minute bars keep regular hours only, the session's own (13:00 on half
    days); minutes without trades stay missing.

    Args:
        settings: `broker.alpaca` (api_key, secret_key, data_url_override).
        clock: tells pre-market from open for `opening_prints`, and "today" for `snapshots`.
        universe: the symbols that `symbols=None` and `symbols()` stand for.
        feed: "sip" (all exchanges; real time needs Algo Trader Plus, history older than 15
            minutes is free), "iex" (free, one exchange) or "delayed_sip" (free, 15 minutes late).
        adjustment: "raw", "split", "dividend" or "all".
        timeout_s: longest wait for one HTTP answer.
        retry_wait_s: alpaca-py's pause before retrying a 429 or 504 (it retries 3 times).

    Raises:
        ConfigError: API keys missing, or an unknown feed or adjustment.
    """

    name = "alpaca"

    def __init__(
        self,
        settings: Settings,
        clock: Clock | None = None,
        *,
        universe: Collection[str] | None = None,
        feed: Feed = "sip",
        adjustment: BarAdjustment = "split",
        timeout_s: float = 10.0,
        retry_wait_s: float = 3.0,
    ) -> None:
        keys = settings.broker.alpaca
        missing = [env for env, value in ((KEY_ENV, keys.api_key), (SECRET_ENV, keys.secret_key)) if not secret(value)]
        if missing:
            raise ConfigError(
                f"Alpaca market data needs API keys: set {' and '.join(missing)} "
                "(the keys of a paper account are enough for market data)"
            )
        try:
            self._feed = DataFeed(feed)
            self._adjustment = Adjustment(adjustment)
        except ValueError:
            raise ConfigError(
                f"unknown Alpaca feed {feed!r} or adjustment {adjustment!r}: feed is one of sip, iex, delayed_sip; "
                "adjustment one of raw, split, dividend, all"
            ) from None
        self._clock = clock or WallClock()
        self._universe = unique_symbols(universe) if universe is not None else None
        self._timeout_s = timeout_s
        self._base_url = keys.data_url_override or BaseURL.DATA.value
        key, secret_key, url = secret(keys.api_key), secret(keys.secret_key), keys.data_url_override
        self._stocks = tuned(
            StockHistoricalDataClient(key, secret_key, raw_data=True, url_override=url), timeout_s, retry_wait_s
        )
        self._screener = tuned(ScreenerClient(key, secret_key, raw_data=True, url_override=url), timeout_s, retry_wait_s)
        self._rejected = RejectedRows()

    def __repr__(self) -> str:
        return f"AlpacaMarketData({self._base_url}, feed={self._feed.value}, adjustment={self._adjustment.value})"

    def close(self) -> None:
        self._stocks._session.close()
        self._screener._session.close()

    @property
    def rejected_rows(self) -> pd.DataFrame:
        """Every bad row dropped so far: `kind, symbol, at, open, high, low, close, volume, reason` (as the
        replay source lists them; `at` a minute bar's ts or a daily bar's date)."""
        return self._rejected.frame

    # -- MarketData ---------------------------------------------------------------------------

    def daily_bars(self, start: date, end: date, symbols: Collection[str] | None = None) -> pd.DataFrame:
        """Daily bars from `start` to `end`, both included, sorted by (symbol, date).

        Raises:
            ConfigError: `start` after `end`, no symbols, or keys/subscription refused.
            TransientError: Alpaca did not answer or stayed busy.
        """
        if start > end:
            raise ConfigError(f"daily_bars: start {start} is after end {end}; pass start <= end")
        wanted = self._wanted(symbols, "daily_bars")
        # Alpaca stamps a daily bar with midnight New York of its day; `end` is inclusive.
        first, last = datetime.combine(start, time(0), NEW_YORK), datetime.combine(end, time(0), NEW_YORK)
        bars = self._bars(wanted, TimeFrame.Day, first, last, f"reading daily bars {start}..{end}")
        bars["date"] = bars["ts"].dt.date
        bars = bars.loc[(bars["date"] >= start) & (bars["date"] <= end), list(DAILY_COLUMNS)]
        return bars.reset_index(drop=True)

    def minute_bars(self, day: date, symbols: Collection[str] | None = None) -> pd.DataFrame:
        """The regular-hours 1-minute bars of `day`, sorted by (symbol, ts).

        Raises:
            ConfigError: `day` is not a session, no symbols, or keys/subscription refused.
            TransientError: Alpaca did not answer or stayed busy.
        """
        wanted = self._wanted(symbols, "minute_bars")
        calendar.require_session(day)
        opens, closes = calendar.session_open(day), calendar.session_close(day)
        # `end` is inclusive and bars are stamped with their first minute: the last one starts a minute before the close.
        bars = self._bars(wanted, TimeFrame.Minute, opens, closes - timedelta(minutes=1), f"reading minute bars of {day}")
        return _regular_hours(bars, opens, closes)

    def opening_prints(self, day: date, symbols: Collection[str] | None = None) -> pd.DataFrame:
        """The pre-market indication before the open of `day`, the 09:30 bar from the open on (see the class).

        Raises:
            ConfigError: `day` is not a session or has not begun yet, no symbols, or keys/subscription refused.
            TransientError: Alpaca did not answer or stayed busy.
        """
        wanted = self._wanted(symbols, "opening_prints")
        calendar.require_session(day)
        now = self._clock.now()
        opens = calendar.session_open(day)
        if now >= opens:
            bars = self._bars(wanted, TimeFrame.Minute, opens, opens, f"reading the 09:30 bars of {day}")
            prints = bars.loc[bars["ts"] == opens, list(OPENING_PRINT_COLUMNS)]
            return prints.reset_index(drop=True)
        day_starts = require_day_begun(day, now)
        rows = []
        for symbol, snap in self._snapshots(wanted, f"reading the pre-market of {day}"):
            trade = snap.latest_trade
            if trade is None or trade.timestamp < day_starts or not trade.price > 0:
                continue  # not traded yet today: no indication
            daily = snap.daily_bar
            volume = daily.volume if daily is not None and _new_york_date(daily.timestamp) == day else 0
            rows.append((symbol, float(trade.price), round(volume)))
        return protocol_frame(OPENING_PRINT_COLUMNS, rows)

    def symbols(self) -> list[str]:
        """The configured universe, sorted.

        Raises:
            ConfigError: no universe was given (a live source has no fixed list of symbols).
        """
        return universe_symbols(self._universe, "AlpacaMarketData")

    # -- live extras --------------------------------------------------------------------------

    def snapshots(self, symbols: Collection[str] | None = None) -> pd.DataFrame:
        """Each symbol's latest state, sorted by symbol.

        Columns `symbol, last_price, bid, ask, prev_close, day_volume`: the latest trade's price
        (which may be from an earlier day: see `opening_prints` for today-only prices), the
        latest quote (NaN for an empty side), the close of the last daily bar before today and
        the volume of today's daily bar (0 when there is none yet). Unknown symbols are absent.

        Raises:
            ConfigError: no symbols, or keys/subscription refused (real-time SIP needs Algo Trader Plus).
            TransientError: Alpaca did not answer or stayed busy.
        """
        wanted = self._wanted(symbols, "snapshots")
        today = self._clock.now().astimezone(NEW_YORK).date()
        rows = []
        for symbol, snap in self._snapshots(wanted, "reading snapshots"):
            daily, previous = snap.daily_bar, snap.previous_daily_bar
            if daily is not None and _new_york_date(daily.timestamp) >= today:
                prev_close, day_volume = (previous.close if previous is not None else math.nan), round(daily.volume)
            else:
                prev_close, day_volume = (daily.close if daily is not None else math.nan), 0
            trade, quote = snap.latest_trade, snap.latest_quote
            rows.append(
                (
                    symbol,
                    _price(trade.price if trade is not None else None),
                    _price(quote.bid_price if quote is not None else None),
                    _price(quote.ask_price if quote is not None else None),
                    _price(prev_close),
                    day_volume,
                )
            )
        return protocol_frame(SNAPSHOT_COLUMNS, rows)

    def movers(self, top: int = MAX_MOVERS) -> pd.DataFrame:
        """The day's top gainers by percent change from the previous close, biggest first.

        Columns `symbol, percent_change, price`; `percent_change` in percent as Alpaca reports it
        (12.5 means +12.5 %). `frame.attrs["last_updated"]` says when Alpaca computed the list.
        Alpaca resets the list at the open: before it, these are the previous session's movers
        (a warning is logged), so a pre-market scan should check its candidates with `snapshots`.

        Raises:
            ConfigError: `top` outside 1..50, or keys refused.
            TransientError: Alpaca did not answer or stayed busy.
        """
        if not 1 <= top <= MAX_MOVERS:
            raise ConfigError(f"movers: top={top} is outside 1..{MAX_MOVERS}, the most Alpaca's screener returns")
        raw = self._fetch("reading the top market movers", self._screener.get_market_movers, MarketMoversRequest(top=top))
        try:
            movers = Movers(**raw)
        except (TypeError, ValidationError) as problem:
            raise DataQualityError(f"Alpaca's market movers could not be read: {_first_line(problem)}") from None
        rows = [(m.symbol, float(m.percent_change), float(m.price)) for m in movers.gainers]
        frame = protocol_frame(MOVER_COLUMNS, rows, sort_by=None)
        frame = frame.sort_values(["percent_change", "symbol"], ascending=[False, True], ignore_index=True)
        updated = pd.Timestamp(movers.last_updated).tz_convert(NEW_YORK)
        frame.attrs["last_updated"] = updated
        now = self._clock.now()
        today = now.astimezone(NEW_YORK).date()
        if calendar.is_session(today) and updated < calendar.session_open(today):
            log.warning(
                "Alpaca's movers were last updated %s, before today's open: they are the previous session's movers",
                updated.isoformat(),
            )
        return frame

    # -- requests -----------------------------------------------------------------------------

    def _bars(self, symbols: list[str], timeframe: TimeFrame, first: datetime, last: datetime, what: str) -> pd.DataFrame:
        """Bars of `symbols` stamped from `first` to `last` (inclusive), every page, sorted by (symbol, ts)."""
        raw: dict[str, list] = {}
        for batch in _batches(symbols):
            request = StockBarsRequest(
                symbol_or_symbols=batch,
                timeframe=timeframe,
                start=first,
                end=last,
                adjustment=self._adjustment,
                feed=self._feed,
            )
            answer = self._fetch(f"{what} ({len(symbols)} symbols)", self._stocks.get_stock_bars, request)
            if not isinstance(answer, dict):
                raise DataQualityError(f"Alpaca's answer while {what} is not a mapping of symbols to bars")
            raw.update(answer)
        kind = "daily" if timeframe.unit == TimeFrameUnit.Day else "minute"
        return _bars_frame(raw, what, kind, self._rejected)

    def _snapshots(self, symbols: list[str], what: str) -> Iterator[tuple[str, Snapshot]]:
        """(symbol, Snapshot) in symbol order; a snapshot that cannot be read is skipped with a warning."""
        raw: dict[str, Any] = {}
        for batch in _batches(symbols):
            request = StockSnapshotRequest(symbol_or_symbols=batch, feed=self._feed)
            answer = self._fetch(f"{what} ({len(symbols)} symbols)", self._stocks.get_stock_snapshot, request)
            if not isinstance(answer, dict):
                raise DataQualityError(f"Alpaca's answer while {what} is not a mapping of symbols to snapshots")
            raw.update(answer)
        for symbol in sorted(raw):
            if symbol not in symbols or not isinstance(raw[symbol], dict):
                continue  # e.g. a null snapshot for an unknown symbol
            try:
                yield symbol, Snapshot(symbol, raw[symbol])
            except (TypeError, ValidationError) as problem:
                log.warning("skipping %s: its Alpaca snapshot could not be read (%s)", symbol, _first_line(problem))

    def _fetch(self, what: str, call: Callable[..., Any], *args: Any) -> Any:
        result, failure = self._call(call, *args)
        if failure is not None:
            raise self._error(failure, what)  # raised here, outside the `except`, so nothing chains to Alpaca's error
        return result

    def _call(self, call: Callable[..., Any], *args: Any) -> tuple[Any, Failure | None]:
        """Run one alpaca-py call; its exception is reduced to a Failure so that nothing chains to it."""
        try:
            return call(*args), None
        except APIError as error:
            return None, api_failure(error, with_code=False)
        except requests.JSONDecodeError as error:  # a 200 whose body is not JSON (a proxy's page, a cut answer)
            return None, Failure(None, None, f"unreadable answer ({_first_line(error)})", unreadable=True)
        except requests.RequestException as error:
            return None, transport_failure(error, self._timeout_s)
        except (ValueError, KeyError, TypeError, AttributeError) as error:  # alpaca-py could not parse the answer
            return None, Failure(
                None, None, f"unreadable answer ({type(error).__name__}: {_first_line(error)})", unreadable=True
            )

    def _error(self, failure: Failure, what: str) -> OpenbellError:
        if failure.unreadable:
            return DataQualityError(f"Alpaca's answer while {what} could not be read: {failure}")
        if failure.status is None:
            return TransientError(
                f"Alpaca market data at {self._base_url} did not answer while {what}: {failure}; retry later"
            )
        if failure.status == 403 and "subscription" in failure.message.lower():
            if self._feed is DataFeed.SIP:
                fix = (
                    'create the source with feed="iex" (free, real time, IEX trades only) or feed="delayed_sip" '
                    "(free, all exchanges, 15 minutes late), or subscribe to Algo Trader Plus for real-time SIP"
                )
            else:
                fix = f"the {self._feed.value} feed is not in your Alpaca market-data subscription; choose another feed"
            return ConfigError(f"Alpaca refused {what} ({failure}): {fix}")
        if failure.status in (401, 403):
            return ConfigError(
                f"Alpaca refused the API keys while {what} ({failure}): check {KEY_ENV} and {SECRET_ENV} "
                "(paper-account keys work for market data; keys are reissued when a paper account is reset)"
            )
        if failure.status == 429 or failure.status >= 500:
            return TransientError(
                f"Alpaca market data is busy ({what}): {failure}, still after alpaca-py's retries; retry later"
            )
        if failure.status in (400, 422):
            return ConfigError(f"Alpaca rejected the request while {what} ({failure}): check the symbols and dates")
        return OpenbellError(f"Alpaca refused {what}: {failure}")

    def _wanted(self, symbols: Collection[str] | None, method: str) -> list[str]:
        return wanted_symbols(symbols, self._universe, asked=f"AlpacaMarketData.{method}", venue="Alpaca")


# -- frames -------------------------------------------------------------------------------------


def _bars_frame(raw: dict[str, list], what: str, kind: str, rejected: RejectedRows) -> pd.DataFrame:
    """Alpaca's {symbol: [{t, o, h, l, c, v, ...}]} as symbol, ts (New York), open..close, volume; the bad rows
    are dropped and added to `rejected` as `kind` bars with their reason (`drop_bad_bars`: a repeated bar drops
    its symbol's day, as the replay source does)."""
    columns: dict[str, list] = {"symbol": [], **{name: [] for name in _BAR_FIELDS.values()}}
    for symbol, bars in raw.items():
        for bar in bars or ():
            columns["symbol"].append(symbol)
            for key, name in _BAR_FIELDS.items():
                columns[name].append(bar.get(key) if isinstance(bar, dict) else None)
    if not columns["symbol"]:
        return protocol_frame(MINUTE_COLUMNS, [])
    frame = pd.DataFrame(columns)
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True, format="ISO8601", errors="coerce").dt.tz_convert(NEW_YORK)
    frame["ts"] = frame["ts"].astype(NEW_YORK_TS)
    numbers = ["open", "high", "low", "close", "volume"]
    frame[numbers] = frame[numbers].apply(pd.to_numeric, errors="coerce").astype("float64")
    frame = drop_bad_bars(frame, "ts", kind=kind, rejected=rejected, what=f"bars {what}", log=log)
    frame["volume"] = frame["volume"].round().astype("int64")
    return frame.sort_values(["symbol", "ts"], ignore_index=True)[list(MINUTE_COLUMNS)]


def _regular_hours(bars: pd.DataFrame, opens: datetime, closes: datetime) -> pd.DataFrame:
    in_session = (bars["ts"] >= opens) & (bars["ts"] < closes)
    return bars.loc[in_session].reset_index(drop=True)


# -- helpers ------------------------------------------------------------------------------------


def _batches(symbols: list[str]) -> Iterator[list[str]]:
    for i in range(0, len(symbols), SYMBOLS_PER_REQUEST):
        yield symbols[i : i + SYMBOLS_PER_REQUEST]


def _new_york_date(moment: datetime) -> date:
    return moment.astimezone(NEW_YORK).date()


def _price(value: float | None) -> float:
    """A quoted price, NaN when absent or zero (Alpaca sends 0 for an empty side of the book)."""
    return float(value) if value is not None and value > 0 else math.nan


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
