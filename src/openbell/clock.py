"""Clocks: the wall clock for live trading and a simulated clock for replays.

Code that waits calls `clock.sleep_until(t)` and reads `clock.now()`; it never asks which clock
it has. A simulated clock jumps instantly, so a replayed day runs the same code in seconds.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Protocol

from openbell.core.types import NEW_YORK


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, tz-aware, New York."""
        ...

    def sleep_until(self, moment: datetime) -> None:
        """Return at `moment` (at once if it has passed)."""
        ...


class WallClock:
    def now(self) -> datetime:
        return datetime.now(NEW_YORK)

    def sleep_until(self, moment: datetime) -> None:
        remaining = (moment - self.now()).total_seconds()
        if remaining > 0:
            time.sleep(remaining)


class SimClock:
    """A clock that starts at `start` and moves only when told to; it never goes backwards."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("SimClock needs a tz-aware start time")
        self._now = start.astimezone(NEW_YORK)

    def now(self) -> datetime:
        return self._now

    def sleep_until(self, moment: datetime) -> None:
        self._now = max(self._now, moment.astimezone(NEW_YORK))
