"""The monitor's policy when the broker refuses a pair: the backoff, and the first bar that crosses a held level."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import numpy as np

from openbell.core.exits import ExitCode
from openbell.core.protection import OUTAGE_LONGEST_WAIT, Retry, first_crossing

NY = ZoneInfo("America/New_York")
T0 = datetime(2025, 3, 7, 10, 0, tzinfo=NY)


def test_a_refused_pair_is_asked_again_after_1_2_4_8_then_every_15_minutes():
    retry, waits = Retry.first(T0), []
    for _ in range(6):
        waits.append(int((retry.due - T0).total_seconds() // 60))
        retry = retry.failed_again(T0)

    assert waits == [1, 2, 4, 8, 15, 15]


def test_an_unreachable_broker_is_asked_again_at_least_every_4_minutes():
    retry = Retry.first(T0, OUTAGE_LONGEST_WAIT)
    for _ in range(5):
        retry = retry.failed_again(T0, OUTAGE_LONGEST_WAIT)

    assert retry.due - T0 == OUTAGE_LONGEST_WAIT


def test_the_first_bar_through_the_stop_closes_the_position_even_when_a_later_bar_reaches_the_target():
    open_, high, low = np.array([50.0, 50.0, 50.0]), np.array([50.1, 50.1, 51.5]), np.array([49.9, 49.4, 49.9])

    assert first_crossing(open_, high, low, Decimal("51.30"), Decimal("49.55")) == (ExitCode.STOP, 1)


def test_no_bar_crossing_either_level_leaves_the_position_open():
    bars = np.array([50.0, 50.2])

    assert first_crossing(bars, bars + 0.1, bars - 0.1, Decimal("51.30"), Decimal("49.55")) == (ExitCode.NONE, -1)
