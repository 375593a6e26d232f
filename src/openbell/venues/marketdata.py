"""The MarketData protocol: daily bars, one day's minute bars and opening prints as DataFrames."""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection
from datetime import date, datetime, time
from typing import Any, Protocol, runtime_checkable

import pandas as pd

from openbell.core.types import NEW_YORK, NEW_YORK_TZ
from openbell.errors import ConfigError

MINUTE_COLUMNS = ("symbol", "ts", "open", "high", "low", "close", "volume")
DAILY_COLUMNS = ("symbol", "date", "open", "high", "low", "close", "volume")
OPENING_PRINT_COLUMNS = ("symbol", "open", "volume")
PRICE_COLUMNS = ("open", "high", "low", "close")
# Live sources add these: the latest quote per symbol, and the screener's gainers.
SNAPSHOT_COLUMNS = ("symbol", "last_price", "bid", "ask", "prev_close", "day_volume")
MOVER_COLUMNS = ("symbol", "percent_change", "price")
NEW_YORK_TS = f"datetime64[us, {NEW_YORK_TZ}]"  # what every source gives, so frames concatenate cleanly


def column_dtype(column: str) -> str:
    """The protocol's dtype of a column: symbol str, ts New York, volumes int64, dates objects, prices float64."""
    if column == "symbol":
        return "str"
    if column == "ts":
        return NEW_YORK_TS
    if column in ("volume", "day_volume"):
        return "int64"
    if column == "date":
        return "object"
    return "float64"


def protocol_frame(
    columns: tuple[str, ...], rows: list[tuple], *, sort_by: str | list[str] | None = "symbol"
) -> pd.DataFrame:
    """A frame of `rows` (tuples in `columns` order) with the protocol's dtypes, sorted by `sort_by`."""
    data: list[tuple[Any, ...]] = list(zip(*rows, strict=True)) if rows else [() for _ in columns]
    frame = pd.DataFrame(
        {name: pd.Series(values, dtype=column_dtype(name)) for name, values in zip(columns, data, strict=True)}
    )
    return frame.sort_values(sort_by, ignore_index=True) if sort_by else frame


REJECTED_COLUMNS = ("kind", "symbol", "at", *PRICE_COLUMNS, "volume", "reason")  # a source's `rejected_rows`


class RejectedRows:
    """The bad rows a live source dropped so far (its `rejected_rows`), for the scan's `data_quality` records."""

    def __init__(self) -> None:
        self._found: list[pd.DataFrame] = []
        self._lock = threading.Lock()

    def add(self, rejected: pd.DataFrame) -> None:
        if not rejected.empty:
            with self._lock:
                self._found.append(rejected)

    @property
    def frame(self) -> pd.DataFrame:
        with self._lock:
            found = list(self._found)
        return pd.concat(found, ignore_index=True) if found else pd.DataFrame(columns=list(REJECTED_COLUMNS))


def drop_bad_bars(
    bars: pd.DataFrame, key: str, *, kind: str, rejected: RejectedRows, what: str, log: logging.Logger
) -> pd.DataFrame:
    """A live source's usable bars; the bad ones are logged on `log` and added to `rejected` (`kind, at, reason`).

    Bad by the replay source's checks (`core.data_quality.bad_row_codes`: a missing value, a non-positive price,
    high below low, open or close outside the range, a negative volume; a repeated bar drops its symbol's day).
    `key` is "ts" or "date"; `kind` is "minute" or "daily" (daily bars keyed by "ts" are recorded at their date);
    `what` completes the warning "dropped N unusable <what> (...)".
    """
    from openbell.core import data_quality as dq  # pure; loaded with the first live bars

    if bars.empty:
        return bars
    when = bars["ts"] if key == "ts" else pd.to_datetime(bars["date"]).dt.tz_localize(NEW_YORK)
    codes = dq.bad_row_codes(bars.assign(ts=when))
    bad = codes != 0
    if not bad.any():
        return bars.loc[~bad]
    found = bars.loc[bad].assign(kind=kind, reason=dq.BAD_ROW_REASONS[codes[bad]]).rename(columns={key: "at"})
    if kind == "daily" and key == "ts":
        found["at"] = [a.date() for a in found["at"]]
    found = found[list(REJECTED_COLUMNS)]
    log.warning("dropped %d unusable %s (%s)", len(found), what,
                ", ".join(f"{r} {n}" for r, n in found["reason"].value_counts().items()))  # fmt: skip
    rejected.add(found)
    return bars.loc[~bad]


def unique_symbols(symbols: Collection[str]) -> list[str]:
    """Symbols asked for, stripped, without blanks or repeats, sorted."""
    return sorted({s.strip() for s in symbols if s and s.strip()})


def wanted_symbols(symbols: Collection[str] | None, universe: list[str] | None, *, asked: str, venue: str) -> list[str]:
    """What a live source fetches: the symbols asked for (one string is one symbol), else its universe.

    Args:
        asked: the method, for the message ("AlpacaMarketData.daily_bars").
        venue: whose API has no whole-market call ("Alpaca", "IB").

    Raises:
        ConfigError: `symbols` is None and the source was given no universe.
    """
    if symbols is None:
        if universe is None:
            raise ConfigError(
                f"{asked} needs symbols=[...]: {venue} has no whole-market call. Pass the symbols to fetch "
                "(e.g. from movers()), or give the source a universe=[...] when creating it"
            )
        return list(universe)
    return unique_symbols([symbols] if isinstance(symbols, str) else symbols)


def universe_symbols(universe: list[str] | None, source: str) -> list[str]:
    """A live source's `symbols()`: the universe it was given.

    Raises:
        ConfigError: no universe was given (a live source has no fixed list of symbols).
    """
    if universe is None:
        raise ConfigError(
            f"{source} has no fixed list of symbols: pass universe=[...] when creating it, "
            "or take the day's candidates from movers()"
        )
    return list(universe)


def require_day_begun(day: date, now: datetime) -> datetime:
    """Midnight New York that starts `day`, once `now` has reached it: a live source's pre-market starts there.

    Raises:
        ConfigError: `now` is before `day`, whose opening prints nobody knows yet.
    """
    day_starts = datetime.combine(day, time(0), NEW_YORK)
    if now < day_starts:
        raise ConfigError(
            f"opening prints of {day} are not known at {now:%Y-%m-%d %H:%M} New York time: ask on the morning of {day}"
        )
    return day_starts


@runtime_checkable
class MarketData(Protocol):
    """Where the scan, the ranking and the simulated broker get their bars.

    Every method returns a new pandas DataFrame with exactly the documented columns; prices are
    float64 USD, volumes int64 shares. Symbols asked for in `symbols=` that the source does not
    know are simply absent from the result: the caller decides whether that is an error.
    """

    def daily_bars(self, start: date, end: date, symbols: Collection[str] | None = None) -> pd.DataFrame:
        """Daily bars from `start` to `end`, both included.

        Columns `symbol, date, open, high, low, close, volume` (`date` holds `datetime.date`),
        sorted by (symbol, date).
        """
        ...

    def minute_bars(self, day: date, symbols: Collection[str] | None = None) -> pd.DataFrame:
        """The regular-hours 1-minute bars of `day` only.

        Columns `symbol, ts, open, high, low, close, volume`; `ts` is tz-aware America/New_York
        and marks the start of the minute. Sorted by (symbol, ts). Minutes without trades are
        missing, never filled in.
        """
        ...

    def opening_prints(self, day: date, symbols: Collection[str] | None = None) -> pd.DataFrame:
        """The indicative opening price and volume known before the open of `day`.

        Columns `symbol, open, volume`, sorted by symbol. Symbols without an opening print are
        absent (a market-on-open order for them would not fill).
        """
        ...

    def symbols(self) -> list[str]:
        """The symbols that have minute bars, sorted."""
        ...
