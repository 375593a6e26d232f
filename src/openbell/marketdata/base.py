"""The MarketData protocol: daily bars, one day's minute bars and opening prints as DataFrames."""

from __future__ import annotations

from collections.abc import Collection
from datetime import date
from typing import Protocol, runtime_checkable

import pandas as pd

MINUTE_COLUMNS = ("symbol", "ts", "open", "high", "low", "close", "volume")
DAILY_COLUMNS = ("symbol", "date", "open", "high", "low", "close", "volume")
OPENING_PRINT_COLUMNS = ("symbol", "open", "volume")
PRICE_COLUMNS = ("open", "high", "low", "close")
# Live sources add these: the latest quote per symbol, and the screener's gainers.
SNAPSHOT_COLUMNS = ("symbol", "last_price", "bid", "ask", "prev_close", "day_volume")
MOVER_COLUMNS = ("symbol", "percent_change", "price")
NEW_YORK_TS = "datetime64[us, America/New_York]"  # what every source gives, so frames concatenate cleanly


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
    data = list(zip(*rows, strict=True)) if rows else [[] for _ in columns]
    frame = pd.DataFrame(
        {name: pd.Series(values, dtype=column_dtype(name)) for name, values in zip(columns, data, strict=True)}
    )
    return frame.sort_values(sort_by, ignore_index=True) if sort_by else frame


def unique_symbols(symbols: Collection[str]) -> list[str]:
    """Symbols asked for, stripped, without blanks or repeats, sorted."""
    return sorted({s.strip() for s in symbols if s and s.strip()})


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
