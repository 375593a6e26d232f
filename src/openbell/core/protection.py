"""Who holds a position's exits, and when to ask the broker again: the exit monitor's pure policy.

A filled entry is protected by a one-cancels-other pair at the broker. When the broker refuses or
fails that pair, the monitor holds the same target and stop itself: each tick it runs the one exit
rule, `core.exits.bar_exits`, over the minute bars completed since it took over, and sells at market
on the first bar that crosses a level. It asks the broker for the pair again after 1, 2, 4, 8, then
every 15 minutes; once the broker accepts it, the monitor lets go. An unreachable broker is asked
again on the same schedule, at most every `OUTAGE_LONGEST_WAIT`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

import numpy as np

from openbell.core.exits import ExitCode, bar_exits
from openbell.core.prices import price_to_units, to_units
from openbell.core.types import Purpose, Symbol

RETRY_WAITS = tuple(timedelta(minutes=m) for m in (1, 2, 4, 8, 15))  # after 1, 2, 3... failures; the last repeats
OUTAGE_LONGEST_WAIT = timedelta(minutes=4)  # an unreachable broker: a read is cheap, a blind monitor is not
EXIT_PURPOSE = {ExitCode.STOP: Purpose.SOFT_STOP, ExitCode.TARGET: Purpose.SOFT_TARGET}


@dataclass(frozen=True, slots=True)
class Retry:
    """A broker call that failed `failures` times in a row, the first time at `since`; tried again from `due`."""

    since: datetime
    failures: int
    due: datetime

    @classmethod
    def first(cls, now: datetime, longest: timedelta = RETRY_WAITS[-1]) -> Retry:
        return cls(now, 1, now + min(RETRY_WAITS[0], longest))

    def failed_again(self, now: datetime, longest: timedelta = RETRY_WAITS[-1]) -> Retry:
        failures = self.failures + 1
        return Retry(self.since, failures, now + min(RETRY_WAITS[min(failures, len(RETRY_WAITS)) - 1], longest))

    def is_due(self, now: datetime) -> bool:
        return now >= self.due


@dataclass(frozen=True, slots=True)
class HeldExit:
    """A position whose target and stop the monitor holds, because the broker refused or failed the pair.

    Bars that start at or after `since` (the minute the monitor took over) are checked.
    """

    symbol: Symbol
    target: Decimal
    stop: Decimal
    since: datetime
    retry: Retry


def first_crossing(
    open_: np.ndarray, high: np.ndarray, low: np.ndarray, target: Decimal, stop: Decimal
) -> tuple[ExitCode, int]:
    """The first bar (float dollars, in time order) on which `bar_exits` closes a long at `target`/`stop`.

    Returns (code, index of that bar), or (ExitCode.NONE, -1) when no bar crosses either level.
    """
    if not len(open_):
        return ExitCode.NONE, -1
    codes, _ = bar_exits(to_units(open_), to_units(high), to_units(low), price_to_units(target), price_to_units(stop))
    hits = np.flatnonzero(codes)
    if not len(hits):
        return ExitCode.NONE, -1
    return ExitCode(int(codes[hits[0]])), int(hits[0])
