"""Market data from Interactive Brokers: the MarketData protocol over ib_async, plus snapshots and movers.

What each call asks TWS / IB Gateway (one request per symbol unless said otherwise):

    daily_bars      reqHistoricalData  barSize "1 day", TRADES, useRTH, formatDate=1, ending 23:59:59 New York
                    of `end` (or now), durationStr "<calendar days> D" ("<n> Y" beyond a year)
    minute_bars     reqHistoricalData  barSize "1 min", TRADES, useRTH, formatDate=2 (epoch seconds, so no
                    guessing TWS's time zone), from the open to the close (or the last whole minute)
    opening_prints  before the open: reqMktData snapshots (last trade price and day volume);
                    from the open on: the 09:30 "1 min" bar
    snapshots       reqMktData snapshots (snapshot=True): bid, ask, last, close (the previous close), volume
    movers          reqScannerSubscription TOP_PERC_GAIN on STK.US.MAJOR (one request, cancelled once answered),
                    then snapshots of the movers for their price and change

Everything runs on the event loop of an `IbSession` (as for `IbkrBroker`), under its own client id: by
default the broker's + 1, since TWS takes one connection per id. The connection is made on first use and
remade on the next call after it drops. Contracts are qualified once
(`Stock(symbol, "SMART", "USD")`) and kept, unknown ones included.

Pacing: IB allows about 60 historical-data requests in any 10 minutes per TWS login. Requests go out one at
a time, spaced by `HistoryPacing` (a sliding window plus a small gap), and wait for a free slot up to
`max_wait_s`. Answers for periods that are over (a past day's minute bars, daily bars up to a past date) are
kept, so a retried or repeated call does not spend the budget again.

Errors:
    TWS not reachable, refused or dropped; no answer in time     -> TransientError
    162 pacing violation, 100 too many messages                  -> HistoricalPacingError (a TransientError
                                                                    with `retry_after_s`)
    200 no security definition                                   -> the symbol is absent (logged once)
    162 "HMDS query returned no data"                            -> the symbol is absent
    354, 10167, 10168, 10089-10091, 162 "no market data permissions" -> ConfigError naming the subscription,
                                                                    or `delayed=True` (reqMarketDataType(3))
    326 client id in use                                         -> ConfigError
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import OrderedDict, deque
from collections.abc import Callable, Collection, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any, TypeGuard, TypeVar

import pandas as pd
from ib_async import IB, BarData, Contract, ScannerSubscription, StartupFetchNONE, Stock, Ticker

from openbell import calendar
from openbell.clock import Clock, WallClock
from openbell.config import Settings
from openbell.core.types import NEW_YORK
from openbell.errors import ConfigError, OpenbellError, TransientError
from openbell.venues.ibkr import mapping
from openbell.venues.ibkr.session import IbSession
from openbell.venues.marketdata import (
    DAILY_COLUMNS,
    MINUTE_COLUMNS,
    MOVER_COLUMNS,
    NEW_YORK_TS,
    OPENING_PRINT_COLUMNS,
    PRICE_COLUMNS,
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

MAX_MOVERS = 50  # the most rows an IB scanner returns
MARKET_DATA_CLIENT_ID_OFFSET = 1  # default client id: the broker's + 1
SNAPSHOTS_AT_ONCE = 50  # a snapshot holds one of the account's market-data lines (100 by default) until it ends
QUALIFY_AT_ONCE = 50
DELAYED = 3  # reqMarketDataType: 15-20 minutes late, free

NO_SECURITY_DEFINITION = 200
HISTORICAL_DATA_ERROR = 162  # pacing violations, "no data" and missing permissions all come as 162
MAX_MESSAGE_RATE = 100
NOT_SUBSCRIBED = 354
DELAYED_INSTEAD = 10167  # "not subscribed. Displaying delayed market data": a warning, data follows
SUBSCRIPTION_ERRORS = frozenset({NOT_SUBSCRIBED, DELAYED_INSTEAD, 10168, 10089, 10090, 10091})

_ONE_MINUTE = timedelta(minutes=1)
_HISTORY_KEPT = 4096
T = TypeVar("T")


class _ConnectionLost(TransientError):
    """The socket to TWS closed before or while a request was answered."""


class HistoricalPacingError(TransientError):
    """IB (or our own pacing) says to wait before the next historical-data request.

    Attributes:
        retry_after_s: seconds after which a retry should go through.
    """

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, slots=True)
class HistoryPacing:
    """How historical-data requests are spaced.

    IB counts about 60 requests in any 10 minutes per TWS login (all its API clients together); the
    default keeps a margin for other clients.

    Args:
        requests: at most this many requests in any `window_s` seconds.
        window_s: the sliding window.
        min_gap_s: at least this long between two requests.
        max_wait_s: a request waits this long at most for a free slot, else HistoricalPacingError.
        cooldown_s: after IB reports a pacing violation, no request is sent for this long.
    """

    requests: int = 50
    window_s: float = 600.0
    min_gap_s: float = 1.0
    max_wait_s: float = 900.0
    cooldown_s: float = 60.0


@dataclass(frozen=True, slots=True)
class Quote:
    """One snapshot of a symbol; NaN for what IB did not send (or sent as -1, an empty side)."""

    last: float
    bid: float
    ask: float
    prev_close: float
    volume: float
    last_time: datetime | None


@dataclass(slots=True)
class _ErrorWatch:
    """IB errors about some contracts (or, with `con_ids` None, about requests without one: the scanner)."""

    con_ids: frozenset[int] | None
    errors: list[tuple[int, int, str]] = field(default_factory=list)  # (conId or reqId, code, message)

    def wants(self, req_id: int, contract: Contract | None) -> bool:
        if self.con_ids is None:
            return contract is None and req_id >= 0
        return contract is not None and contract.conId in self.con_ids


class _Pacer:
    """A sliding window over sent historical requests; used on the event loop only."""

    def __init__(self, pacing: HistoryPacing, loop: asyncio.AbstractEventLoop) -> None:
        self._pacing, self._loop = pacing, loop
        self._sent: deque[float] = deque()
        self._blocked_until = 0.0

    async def slot(self) -> None:
        """Wait for room to send one request, then count it.

        Raises:
            HistoricalPacingError: IB reported a violation lately, or the wait would exceed `max_wait_s`.
        """
        pacing, now = self._pacing, self._loop.time()
        if now < self._blocked_until:
            wait = self._blocked_until - now
            raise HistoricalPacingError(
                f"Interactive Brokers reported a historical-data pacing violation: retry after {wait:.0f} s", wait
            )
        while self._sent and now - self._sent[0] >= pacing.window_s:
            self._sent.popleft()
        wait = 0.0
        if len(self._sent) >= pacing.requests:
            wait = self._sent[len(self._sent) - pacing.requests] + pacing.window_s - now
        if self._sent:
            wait = max(wait, self._sent[-1] + pacing.min_gap_s - now)
        if wait > pacing.max_wait_s:
            raise HistoricalPacingError(
                f"{pacing.requests} historical-data requests were sent in the last {pacing.window_s:.0f} s, the most "
                f"IB allows: retry after {wait:.0f} s",
                wait,
            )
        if wait > 0:
            await asyncio.sleep(wait)
        self._sent.append(self._loop.time())

    def violated(self) -> float:
        """IB said to slow down: hold every request for the cooldown, which is returned."""
        self._blocked_until = self._loop.time() + self._pacing.cooldown_s
        return self._pacing.cooldown_s


class IbkrMarketData:
    """MarketData from Interactive Brokers through TWS or IB Gateway, for live mornings and recent history.

    IB has no "whole market" bars call: pass `symbols=`, or give a `universe` that `symbols=None` and
    `symbols()` then mean. Symbols IB does not know are absent from every result.

    Bars are IB's TRADES bars of regular hours. Only bars that are over at the clock's now are returned: the
    minute in progress and the daily bar of a session still trading are left out, as a replay would have
    them. Minutes without trades stay missing. Volumes are in shares, as TWS 985 and later sends them (TWS's
    API setting "send market data in lots for US stocks" must stay off).

    Opening prints depend on the clock. Before the open of `day` they come from a snapshot: `open` is the
    last trade's price and `volume` IB's day volume (0 when IB sends none). A symbol whose last trade IB
    dates before `day` is absent; when IB sends no trade time the last price is taken as it is. IB's auction
    indications (generic tick 225) need a streaming subscription and are not used. From the open on the
    prints are the open and volume of the 09:30 minute bar, available once that minute is over.

    Args:
        settings: `broker.ibkr` gives host, port and connect timeout; `trading_mode` decides which ports are
            allowed (see `session.api_ports`).
        clock: tells which bars are over and pre-market from open.
        universe: the symbols that `symbols=None` and `symbols()` stand for.
        client_id: the API client id; default the broker's client id + 1.
        delayed: ask for delayed data (reqMarketDataType(3)), free without market-data subscriptions.
        request_timeout_s: longest wait for one answer (IB takes up to 11 s to end a snapshot).
        pacing: how historical requests are spaced.
        connect_attempts: connection attempts per call before giving up with TransientError.
        reconnect_delays_s: pauses between connection attempts.
    """

    name = "ibkr"

    def __init__(
        self,
        settings: Settings,
        clock: Clock | None = None,
        *,
        universe: Collection[str] | None = None,
        client_id: int | None = None,
        delayed: bool = False,
        request_timeout_s: float = 20.0,
        pacing: HistoryPacing = HistoryPacing(),
        connect_attempts: int = 3,
        reconnect_delays_s: Sequence[float] = (0.5, 1.0, 2.0),
    ) -> None:
        self._client_id = settings.broker.ibkr.client_id + MARKET_DATA_CLIENT_ID_OFFSET if client_id is None else client_id
        self._session = session = IbSession(
            settings, self._client_id, owner="IbkrMarketData", purpose=" for market data",
            request_timeout_s=request_timeout_s, reconnect_delays_s=reconnect_delays_s,
            after_drop="the next call reconnects", thread_name=f"ibkr-data-{self._client_id}",
        )  # fmt: skip
        self._clock = clock or WallClock()
        self._universe = unique_symbols(universe) if universe is not None else None
        self._delayed = delayed
        self._timeout = request_timeout_s
        self._pacing = pacing
        self._attempts = max(1, connect_attempts)
        self._connect_budget = self._attempts * (session.connect_timeout * len(session.ports) + max(session.delays) + 1)

        self._rejected = RejectedRows()  # the bad bars dropped so far (`rejected_rows`)
        # Everything below is touched only on the event loop's thread.
        self._contracts: dict[str, Contract | None] = {}  # None: IB knows no such stock
        self._history: OrderedDict[tuple, list[BarData]] = OrderedDict()
        self._watches: list[_ErrorWatch] = []
        self._connect_lock = asyncio.Lock()
        self._history_lock = asyncio.Lock()
        self._scanner_lock = asyncio.Lock()
        self._pacer = _Pacer(pacing, session.loop)

    def __repr__(self) -> str:
        return f"IbkrMarketData({self._where()}, client id {self._client_id}, {'delayed' if self._delayed else 'live'})"

    def __enter__(self) -> IbkrMarketData:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Disconnect and stop the event loop."""
        self._session.close()

    # -- MarketData ---------------------------------------------------------------------------

    def daily_bars(self, start: date, end: date, symbols: Collection[str] | None = None) -> pd.DataFrame:
        """Daily bars from `start` to `end`, both included, sorted by (symbol, date).

        Raises:
            ConfigError: `start` after `end`, no symbols, or no market-data permission.
            TransientError: TWS not reachable or slow; HistoricalPacingError when IB's pacing is used up.
        """
        if start > end:
            raise ConfigError(f"daily_bars: start {start} is after end {end}; pass start <= end")
        wanted = self._wanted(symbols, "daily_bars")
        return self._call(lambda: self._daily_bars(wanted, start, end), timeout=self._history_budget(len(wanted)))

    def minute_bars(self, day: date, symbols: Collection[str] | None = None) -> pd.DataFrame:
        """The regular-hours 1-minute bars of `day` that are over, sorted by (symbol, ts).

        Raises:
            ConfigError: `day` is not a session, no symbols, or no market-data permission.
            TransientError: TWS not reachable or slow; HistoricalPacingError when IB's pacing is used up.
        """
        wanted = self._wanted(symbols, "minute_bars")
        calendar.require_session(day)
        opens, closes = calendar.session_open(day), calendar.session_close(day)
        what = f"minute bars of {day}"
        return self._call(lambda: self._minute_bars(wanted, opens, closes, what), timeout=self._history_budget(len(wanted)))

    def opening_prints(self, day: date, symbols: Collection[str] | None = None) -> pd.DataFrame:
        """The pre-market indication before the open of `day`, the 09:30 bar from the open on (see the class).

        Raises:
            ConfigError: `day` is not a session or has not begun yet, no symbols, or no market-data subscription.
            TransientError: TWS not reachable or slow; HistoricalPacingError when IB's pacing is used up.
        """
        wanted = self._wanted(symbols, "opening_prints")
        calendar.require_session(day)
        now, opens = self._clock.now(), calendar.session_open(day)
        if now >= opens:
            what = f"the 09:30 bars of {day}"
            bars = self._call(lambda: self._minute_bars(wanted, opens, opens + _ONE_MINUTE, what),
                              timeout=self._history_budget(len(wanted)))  # fmt: skip
            prints = bars.loc[bars["ts"] == opens, list(OPENING_PRINT_COLUMNS)]
            return prints.reset_index(drop=True)
        day_starts = require_day_begun(day, now)
        quotes = self._call(
            lambda: self._snapshots(wanted, f"the pre-market of {day}"), timeout=self._snapshot_budget(len(wanted))
        )
        rows = []
        for symbol, quote in quotes.items():
            if not quote.last > 0:
                continue  # no trade known: no indication
            if quote.last_time is not None and quote.last_time < day_starts:
                continue  # last traded on an earlier day
            rows.append((symbol, quote.last, _shares(quote.volume)))
        return protocol_frame(OPENING_PRINT_COLUMNS, rows)

    def symbols(self) -> list[str]:
        """The configured universe, sorted.

        Raises:
            ConfigError: no universe was given (a live source has no fixed list of symbols).
        """
        return universe_symbols(self._universe, "IbkrMarketData")

    # -- live extras --------------------------------------------------------------------------

    def snapshots(self, symbols: Collection[str] | None = None) -> pd.DataFrame:
        """Each symbol's latest state, sorted by symbol.

        Columns `symbol, last_price, bid, ask, prev_close, day_volume`: IB's last price (which may be from
        an earlier day), bid and ask (NaN for an empty side), close (IB's previous-session close) and day
        volume (0 when IB sends none). NaN for whatever IB did not send. Unknown symbols are absent.

        Raises:
            ConfigError: no symbols, or no market-data subscription (see `delayed`).
            TransientError: TWS not reachable or slow.
        """
        wanted = self._wanted(symbols, "snapshots")
        quotes = self._call(lambda: self._snapshots(wanted, "snapshots"), timeout=self._snapshot_budget(len(wanted)))
        rows = [(s, q.last, q.bid, q.ask, q.prev_close, _shares(q.volume)) for s, q in quotes.items()]
        return protocol_frame(SNAPSHOT_COLUMNS, rows)

    def movers(self, top: int = MAX_MOVERS) -> pd.DataFrame:
        """The top gainers by percent change, in IB's scanner order (TOP_PERC_GAIN over STK.US.MAJOR).

        Columns `symbol, percent_change, price`: the scanner gives only the ranking, so price (the last
        price) and percent change from the previous close (12.5 means +12.5 %) come from a snapshot of each
        mover; NaN when the snapshot lacks them or market data is not subscribed (a warning is logged).

        Raises:
            ConfigError: `top` outside 1..50, or the scanner refused for want of a subscription.
            TransientError: TWS not reachable or slow.
        """
        if not 1 <= top <= MAX_MOVERS:
            raise ConfigError(f"movers: top={top} is outside 1..{MAX_MOVERS}, the most rows an IB scanner returns")
        return self._call(
            lambda: self._movers(top), timeout=self._connect_budget + 2 * self._timeout + self._snapshot_budget(top)
        )

    @property
    def rejected_rows(self) -> pd.DataFrame:
        """Every bad bar dropped so far, with `kind, symbol, at, open, high, low, close, volume, reason`."""
        return self._rejected.frame

    # -- requests, on the event loop ------------------------------------------------------------

    async def _daily_bars(self, symbols: list[str], start: date, end: date) -> pd.DataFrame:
        now = self._clock.now()
        end_at = min(datetime.combine(end, time(23, 59, 59), NEW_YORK), now)
        if end_at < datetime.combine(start, time(0), NEW_YORK):
            return protocol_frame(DAILY_COLUMNS, [])
        days = (end_at.astimezone(NEW_YORK).date() - start).days + 1
        duration = f"{days} D" if days <= 365 else f"{math.ceil(days / 365)} Y"
        finished = end_at < now  # the whole range is in the past: IB's answer will not change
        rows = []
        for symbol, contract in (await self._contracts_for(symbols)).items():
            what = f"daily bars {start}..{end} of {symbol}"
            for bar in await self._bars(symbol, contract, end_at, duration, "1 day", 1, what, keep=finished):
                day = _bar_day(bar.date)
                if start <= day <= end and _day_is_over(day, now):
                    rows.append((symbol, day, bar.open, bar.high, bar.low, bar.close, bar.volume))
        return _bars_frame(DAILY_COLUMNS, rows, self._rejected, what=f"daily bars {start}..{end}")

    async def _minute_bars(self, symbols: list[str], opens: datetime, closes: datetime, what: str) -> pd.DataFrame:
        """The bars that start in [opens, closes) and are over at the clock's now."""
        now = self._clock.now()
        last_minute_ends = min(closes, now.replace(second=0, microsecond=0))
        if last_minute_ends <= opens:
            return protocol_frame(MINUTE_COLUMNS, [])
        duration = f"{int((last_minute_ends - opens).total_seconds())} S"
        rows = []
        for symbol, contract in (await self._contracts_for(symbols)).items():
            bars = await self._bars(symbol, contract, last_minute_ends, duration, "1 min", 2, f"{what} of {symbol}",
                                    keep=last_minute_ends == closes)  # fmt: skip
            for bar in bars:
                ts = _minute_start(bar.date)
                if ts is not None and opens <= ts < last_minute_ends:
                    rows.append((symbol, ts, bar.open, bar.high, bar.low, bar.close, bar.volume))
        return _bars_frame(MINUTE_COLUMNS, rows, self._rejected, what=what)

    async def _bars(
        self, symbol: str, contract: Contract, end: datetime, duration: str, bar_size: str, format_date: int,
        what: str, *, keep: bool,
    ) -> list[BarData]:  # fmt: skip
        """One reqHistoricalData, paced; [] when IB has no bars for it."""
        key = (contract.conId, bar_size, duration, end)
        if (kept := self._kept_bars(key)) is not None:
            return kept
        async with self._history_lock:
            # A call running alongside may have fetched the same bars while this one waited for the lock.
            if (kept := self._kept_bars(key)) is not None:
                return kept
            await self._pacer.slot()
            ib = await self._ready()
            with self._watching(frozenset({contract.conId})) as watch:
                request = ib.reqHistoricalDataAsync(
                    contract, end, duration, bar_size, "TRADES", True, format_date, timeout=0
                )  # ib_async's own timeout would return [] silently: time out here instead
                bars = list(await self._answer(request, what))
        for _, code, message in watch.errors:
            if code == HISTORICAL_DATA_ERROR and "no data" in message.lower():
                return []
            problem = self._problem(code, message, what)
            if problem is not None:
                raise problem
            if not _is_information(code):
                log.warning("Interactive Brokers refused %s (error %d: %s); leaving %s out", what, code, message, symbol)
                return []
        if keep:
            self._history[key] = bars
            if len(self._history) > _HISTORY_KEPT:
                self._history.popitem(last=False)
        return bars

    def _kept_bars(self, key: tuple) -> list[BarData] | None:
        if key not in self._history:
            return None
        self._history.move_to_end(key)
        return self._history[key]

    async def _snapshots(self, symbols: list[str], what: str) -> dict[str, Quote]:
        return await self._quotes(await self._contracts_for(symbols), what)

    async def _quotes(self, contracts: dict[str, Contract], what: str) -> dict[str, Quote]:
        """Snapshots of `contracts`, a batch at a time, in symbol order."""
        quotes: dict[str, Quote] = {}
        items = sorted(contracts.items())
        for first in range(0, len(items), SNAPSHOTS_AT_ONCE):
            batch = items[first : first + SNAPSHOTS_AT_ONCE]
            ib = await self._ready()
            for _, contract in batch:  # ib_async keeps one Ticker per contract: forget the last snapshot's values
                ticker = ib.ticker(contract)
                if ticker is not None:
                    _clear(ticker)
            with self._watching(frozenset(c.conId for _, c in batch)) as watch:
                tickers = await self._answer(ib.reqTickersAsync(*(c for _, c in batch)), f"reading {what}")
            refused: set[int] = set()
            for con_id, code, message in watch.errors:
                problem = self._problem(code, message, f"reading {what}")
                if problem is not None:
                    raise problem
                if not _is_information(code) and not (code == DELAYED_INSTEAD and self._delayed):
                    refused.add(con_id)
                    log.warning("Interactive Brokers sent no snapshot of contract %d (error %d: %s)", con_id, code, message)
            for (symbol, contract), ticker in zip(batch, tickers, strict=True):
                if contract.conId not in refused:
                    quotes[symbol] = _quote(ticker)
        return quotes

    async def _movers(self, top: int) -> pd.DataFrame:
        subscription = ScannerSubscription(
            numberOfRows=top, instrument="STK", locationCode="STK.US.MAJOR", scanCode="TOP_PERC_GAIN"
        )
        async with self._scanner_lock:
            ib = await self._ready()
            with self._watching(None) as watch:
                scan = list(await self._answer(ib.reqScannerDataAsync(subscription), "reading the top gainers"))
        for _, code, message in watch.errors:
            problem = self._problem(code, message, "reading the top gainers (scanner TOP_PERC_GAIN)")
            if problem is not None:
                raise problem
            if not _is_information(code):
                raise OpenbellError(f"Interactive Brokers refused the TOP_PERC_GAIN scanner: error {code}: {message}")
        ranked: dict[str, Contract] = {}
        for row in sorted(scan, key=lambda r: r.rank):
            scanned = row.contractDetails.contract
            if scanned is None or not scanned.symbol or scanned.symbol in ranked:
                continue
            known = self._contracts.get(scanned.symbol)
            ranked[scanned.symbol] = known or Stock(scanned.symbol, "SMART", "USD", conId=scanned.conId)
            self._contracts.setdefault(scanned.symbol, ranked[scanned.symbol])
            if len(ranked) == top:
                break
        try:
            quotes = await self._quotes(ranked, "the movers' snapshots")
        except ConfigError as problem:
            log.warning("movers without prices: %s", problem)
            quotes = {}
        rows = []
        for symbol in ranked:
            quote = quotes.get(symbol)
            price = quote.last if quote is not None else math.nan
            prev_close = quote.prev_close if quote is not None else math.nan
            change = (price / prev_close - 1) * 100 if price > 0 and prev_close > 0 else math.nan
            rows.append((symbol, change, price))
        return protocol_frame(MOVER_COLUMNS, rows, sort_by=None)

    async def _contracts_for(self, symbols: list[str]) -> dict[str, Contract]:
        """The qualified contracts of the symbols IB knows; unknown ones are logged once and left out."""
        missing = [s for s in symbols if s not in self._contracts]
        for first in range(0, len(missing), QUALIFY_AT_ONCE):
            batch = missing[first : first + QUALIFY_AT_ONCE]
            ib = await self._ready()
            asked = asyncio.gather(*(ib.qualifyContractsAsync(mapping.to_contract(s)) for s in batch))
            answers = await self._answer(asked, f"looking up {len(batch)} contract(s)")
            for symbol, (qualified,) in zip(batch, answers, strict=True):
                if isinstance(qualified, Contract) and qualified.conId:
                    self._contracts[symbol] = qualified
                else:
                    self._contracts[symbol] = None
                    log.warning("Interactive Brokers knows no US stock %s on SMART (error %d or ambiguous): leaving it out",
                                symbol, NO_SECURITY_DEFINITION)  # fmt: skip
        return {s: c for s in symbols if (c := self._contracts.get(s)) is not None}

    async def _answer(self, request: Coroutine[Any, Any, T] | asyncio.Future[T], what: str) -> T:
        """Await one ib_async request within the request timeout; a lost or silent TWS is a TransientError."""
        try:
            return await asyncio.wait_for(request, self._timeout)
        except TimeoutError:
            raise TransientError(
                f"TWS/IB Gateway at {self._where()} did not answer {what} within {self._timeout:g} s; retry later"
            ) from None
        except ConnectionError as exc:
            raise _ConnectionLost(
                f"lost the connection to TWS/IB Gateway at {self._where()} while {what} ({exc}); retry"
            ) from None

    def _problem(self, code: int, message: str, what: str) -> OpenbellError | None:
        """The exception an IB error about a data request stands for; None when it is not one of ours to raise."""
        lowered = message.lower()
        if code == MAX_MESSAGE_RATE or (code == HISTORICAL_DATA_ERROR and "pacing" in lowered):
            wait = self._pacer.violated()
            return HistoricalPacingError(
                f"Interactive Brokers asked to slow down while {what} (error {code}: {message}): retry after {wait:.0f} s",
                wait,
            )
        if code == DELAYED_INSTEAD and self._delayed:
            return None  # asked for: delayed data follows
        if code in SUBSCRIPTION_ERRORS or (code == HISTORICAL_DATA_ERROR and "permission" in lowered):
            return ConfigError(
                f"Interactive Brokers refused {what} (error {code}: {message}): {self._subscription_fix(code)}"
            )
        return None

    def _subscription_fix(self, code: int) -> str:
        subscribe = (
            "subscribe to US stock market data for API use in Client Portal (Settings > Market Data Subscriptions: "
            "'US Securities Snapshot and Futures Value Bundle' and 'US Equity and Options Add-On Streaming Bundle' "
            "cover NYSE, AMEX and NASDAQ; a paper account uses the live account's subscriptions once market-data "
            "sharing is enabled there)"
        )
        if self._delayed:
            return f"delayed data was asked for but not given (is it enabled for this login?); {subscribe}"
        return f"{subscribe}, or create IbkrMarketData(..., delayed=True) to take free delayed data (reqMarketDataType(3))"

    @contextlib.contextmanager
    def _watching(self, con_ids: frozenset[int] | None) -> Iterator[_ErrorWatch]:
        watch = _ErrorWatch(con_ids)
        self._watches.append(watch)
        try:
            yield watch
        finally:
            self._watches.remove(watch)

    # -- the connection, on the event loop --------------------------------------------------------

    async def _ready(self) -> IB:
        """The connected client; connects (again) first when needed."""
        async with self._connect_lock:
            ib = self._session.ib
            if ib is not None and ib.isConnected():
                return ib
            return await self._session.connect_with_retries(self._connect, self._attempts)

    async def _connect(self) -> IB:
        ib = self._session.client()
        ib.errorEvent += self._on_error
        await self._session.connect(ib, self._client_id_in_use, readonly=True, fetchFields=StartupFetchNONE)
        if self._delayed:
            ib.reqMarketDataType(DELAYED)
        log.info("connected to TWS/IB Gateway at %s for market data, client id %d", self._where(), self._client_id)
        return ib

    def _client_id_in_use(self, message: str) -> ConfigError:
        return ConfigError(
            f"TWS/IB Gateway refused market-data client id {self._client_id}: it is in use by another "
            "connection. Pass IbkrMarketData(..., client_id=<a free id>) (the broker uses "
            "OPENBELL_BROKER__IBKR__CLIENT_ID; market data takes that + 1 by default)"
        )

    def _on_error(self, req_id: int, code: int, message: str, contract: Contract | None) -> None:
        for watch in self._watches:
            if watch.wants(req_id, contract):
                watch.errors.append((contract.conId if contract is not None else req_id, code, message))
        if _is_information(code):
            log.debug("TWS says (%d, request %d): %s", code, req_id, message)

    def _call(self, operation: Callable[[], Coroutine[Any, Any, T]], timeout: float) -> T:
        """Run `operation` on the event loop and wait for it; once more after a reconnect when the socket closed."""
        return self._session.call(self._twice_if_disconnected(operation), timeout)

    @staticmethod
    async def _twice_if_disconnected(operation: Callable[[], Coroutine[Any, Any, T]]) -> T:
        # Every request here only reads, so asking again is safe; the socket may close between the check
        # that it is open and the request (a TWS restart), which no check beforehand can rule out.
        try:
            return await operation()
        except _ConnectionLost as lost:
            log.warning("%s: reconnecting to ask again", lost)
            return await operation()

    def _history_budget(self, requests: int) -> float:
        """Longest a call of `requests` historical requests may take: answers, gaps and waits for the window."""
        pacing = self._pacing
        windows = math.ceil(requests / max(1, pacing.requests)) * pacing.window_s
        return (
            self._connect_budget + self._qualify_budget(requests) + requests * (self._timeout + pacing.min_gap_s) + windows
        )

    def _snapshot_budget(self, symbols: int) -> float:
        batches = math.ceil(symbols / SNAPSHOTS_AT_ONCE)
        return self._connect_budget + self._qualify_budget(symbols) + batches * self._timeout + 5

    def _qualify_budget(self, symbols: int) -> float:
        return math.ceil(symbols / QUALIFY_AT_ONCE) * self._timeout + 5

    def _where(self) -> str:
        return self._session.where()

    def _wanted(self, symbols: Collection[str] | None, method: str) -> list[str]:
        return wanted_symbols(symbols, self._universe, asked=f"IbkrMarketData.{method}", venue="IB")


# -- IB values ------------------------------------------------------------------------------------


def _is_information(code: int) -> bool:
    """Farm status (2100-2199) and IB's warnings: nothing failed."""
    return mapping.error_kind(code) is mapping.IbErrorKind.INFORMATION and code != DELAYED_INSTEAD


def _quote(ticker: Ticker) -> Quote:
    last_time = ticker.lastTimestamp or getattr(ticker, "delayedLastTimestamp", None)
    return Quote(
        last=_price(ticker.last),
        bid=_price(ticker.bid),
        ask=_price(ticker.ask),
        prev_close=_price(ticker.close),
        volume=ticker.volume if _finite(ticker.volume) and ticker.volume >= 0 else math.nan,
        last_time=last_time.astimezone(NEW_YORK) if isinstance(last_time, datetime) else None,
    )


def _clear(ticker: Ticker) -> None:
    for name in ("last", "bid", "ask", "close", "volume"):
        setattr(ticker, name, math.nan)
    ticker.lastTimestamp = None
    if hasattr(ticker, "delayedLastTimestamp"):
        ticker.delayedLastTimestamp = None


def _price(value: float | None) -> float:
    """A price, NaN when absent or not positive (IB sends -1 for an empty side of the book)."""
    return float(value) if _finite(value) and value > 0 else math.nan


def _finite(value: float | None) -> TypeGuard[float]:
    return value is not None and not math.isnan(value) and not math.isinf(value)


def _shares(volume: float) -> int:
    return round(volume) if _finite(volume) else 0


def _minute_start(value: date | datetime) -> datetime | None:
    """A minute bar's time in New York; a naive time (an old TWS ignoring formatDate=2) is taken as New York's."""
    if not isinstance(value, datetime):
        return None
    return value.replace(tzinfo=NEW_YORK) if value.tzinfo is None else value.astimezone(NEW_YORK)


def _bar_day(value: date | datetime) -> date:
    if isinstance(value, datetime):
        return (value.astimezone(NEW_YORK) if value.tzinfo else value).date()
    return value


def _day_is_over(day: date, now: datetime) -> bool:
    """True when the daily bar of `day` is final at `now`: its session has closed."""
    today = now.astimezone(NEW_YORK).date()
    if day != today:
        return day < today
    return not calendar.is_session(day) or now >= calendar.session_close(day)


# -- frames -------------------------------------------------------------------------------------


def _bars_frame(columns: tuple[str, ...], rows: list[tuple], rejected: RejectedRows, *, what: str) -> pd.DataFrame:
    """Bars with the protocol's dtypes, sorted by (symbol, time); unusable bars dropped and added to `rejected`."""
    if not rows:
        return protocol_frame(columns, [])
    key = columns[1]  # "ts" or "date"
    frame = pd.DataFrame(rows, columns=list(columns))
    numbers = [*PRICE_COLUMNS, "volume"]
    frame[numbers] = frame[numbers].apply(pd.to_numeric, errors="coerce").astype("float64")
    if key == "ts":
        frame["ts"] = frame["ts"].astype(NEW_YORK_TS)
    kind = "minute" if key == "ts" else "daily"  # a negative volume among the bad: IB sends -1 when it has no volume
    frame = drop_bad_bars(frame, key, kind=kind, rejected=rejected, what=what, log=log)
    frame = frame.astype({"symbol": "str", "volume": "int64"})
    return frame.sort_values(["symbol", key], ignore_index=True)
