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
