"""A MarketData of minute bars a test writes down: flat bars at a price, and the bars that cross a level."""

from __future__ import annotations

from collections.abc import Collection
from datetime import date, datetime, timedelta

import pandas as pd

from openbell.venues.marketdata import MINUTE_COLUMNS, protocol_frame


class ScriptedMarket:
    """Minute bars for the exit monitor: every symbol trades flat at its price each minute unless a bar is set."""

    def __init__(self, day: date, prices: dict[str, float], start: datetime, end: datetime) -> None:
        self.day = day
        self._bars: dict[tuple[str, datetime], tuple[float, float, float, float]] = {}
        minute = start
        while minute < end:
            for symbol, price in prices.items():
                self._bars[(symbol, minute)] = (price, price + 0.05, price - 0.05, price)
            minute += timedelta(minutes=1)
        self.requests = 0

    def set_bar(self, symbol: str, start: datetime, open_: float, high: float, low: float, close: float) -> None:
        self._bars[(symbol, start)] = (open_, high, low, close)

    def minute_bars(self, day: date, symbols: Collection[str] | None = None) -> pd.DataFrame:
        self.requests += 1
        rows = [(s, ts, *ohlc, 1000) for (s, ts), ohlc in self._bars.items() if symbols is None or s in symbols]
        return protocol_frame(MINUTE_COLUMNS, rows, sort_by=["symbol", "ts"])
