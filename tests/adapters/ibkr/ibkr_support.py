"""What the Interactive Brokers tests share: the trading day, its times, the holding from before, and polling."""

from __future__ import annotations

import time
from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from openbell.core.types import Position, Symbol

NY = ZoneInfo("America/New_York")
DAY = date(2025, 3, 7)  # a Friday session; the previous session closed on Thursday at 16:00
IBM_HOLDING = Position(Symbol("IBM"), 100, Decimal("140.0000"))  # bought before openbell ran


def at(hhmm: str) -> datetime:
    """A moment of DAY, New York time."""
    hour, minute = map(int, hhmm.split(":"))
    return datetime(DAY.year, DAY.month, DAY.day, hour, minute, tzinfo=NY)


def eventually(probe, timeout: float = 5.0):
    """Poll `probe` until it returns something truthy (TWS pushes order events asynchronously)."""
    deadline = time.monotonic() + timeout
    while not (result := probe()):
        if time.monotonic() > deadline:
            raise AssertionError(f"still not true after {timeout} s")
        time.sleep(0.02)
    return result
