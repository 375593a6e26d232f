"""The vectorised scan equals the scan as first written (tests/unit/reference_scan.py), row for row, on real bars.

Every session of the recorded minute file is scanned the way the scan task does it (the replay source's
daily window, its opening prints, the prior session's last minute closes); one session is scanned for the
whole 7,330-symbol daily file; and one with dirty bars written into the real history, the kinds the data
quality gate exists for.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from openbell import calendar
from openbell.core import scan
from openbell.venues.replay import ParquetReplaySource
from tests.unit import reference_scan

pytestmark = pytest.mark.shared_data

LOOKBACK = timedelta(days=45)  # the scan task's window


@pytest.fixture(scope="module")
def source(shared_data) -> ParquetReplaySource:
    minute, daily = shared_data
    return ParquetReplaySource(minute, daily)


def scan_inputs(source: ParquetReplaySource, day: date) -> tuple[pd.DataFrame, pd.DataFrame, date, pd.Series]:
    prior = calendar.previous_session(day)
    daily = source.daily_bars(prior - LOOKBACK, prior)
    opening = source.opening_prints(day)
    if prior in source.sessions():
        last_closes = source.minute_bars(prior).groupby("symbol")["close"].last()
    else:
        last_closes = None
    return daily, opening, prior, last_closes


def reference(daily: pd.DataFrame, opening: pd.DataFrame, prior: date, override: pd.Series | None) -> pd.DataFrame:
    # The reference spends a Python call on every symbol of `daily`; the symbols without an opening print
    # do not reach its result, so leaving them out only saves time.
    return reference_scan.scan_features(daily[daily["symbol"].isin(opening["symbol"])], opening, prior, override)


def test_every_recorded_session_scans_as_the_reference_does(source: ParquetReplaySource):
    sessions = source.sessions()
    assert len(sessions) == 15

    for day in sessions:
        daily, opening, prior, override = scan_inputs(source, day)

        fast = scan.scan_features(daily, opening, prior, override)

        pd.testing.assert_frame_equal(fast, reference(daily, opening, prior, override), obj=f"scan of {day}")
        filters = scan.ScanFilters()
        pd.testing.assert_frame_equal(
            scan.apply_filters(fast, filters),
            scan.apply_filters(reference(daily, opening, prior, override), filters),
            obj=f"filtered scan of {day}",
        )


def test_the_whole_daily_file_scans_as_the_reference_does(source: ParquetReplaySource):
    day = date(2018, 3, 1)
    prior = calendar.previous_session(day)
    daily = source.daily_bars(prior - LOOKBACK, prior)
    opening = source.daily_bars(day, day)[["symbol", "open", "volume"]]  # every listed symbol's open that day
    assert len(opening) > 7_000

    fast = scan.scan_features(daily, opening, prior)

    expected = reference_scan.scan_features(daily, opening, prior)
    pd.testing.assert_frame_equal(fast, expected)
    assert fast["passed"].sum() > 6_000 and set(fast["reject_reason"].dropna()) == {
        "fewer than 20 sessions of daily history",
        "no daily history",
    }


def test_dirty_history_gets_the_references_verdicts_row_for_row(source: ParquetReplaySource):
    day = date(2018, 3, 1)
    daily, opening, prior, override = scan_inputs(source, day)
    symbols = sorted(set(opening["symbol"]) & set(daily["symbol"]))
    dirty, opening = daily.copy(), opening.copy()
    rows_of = {s: dirty.index[dirty["symbol"] == s] for s in symbols}
    damage = [
        ("close", -1, np.nan),  # the prior session's close is missing: the gate rejects, "last" skips it
        ("open", -3, np.nan),
        ("low", -5, 0.0),
        ("high", -2, 1.0),  # high below low
        ("volume", -7, -100),
        ("close", 0, -5.0),  # older than the last 20 sessions: ignored by the gate
        ("close", -20, 0.0),  # the oldest of the last 20 sessions
        ("close", -21, np.nan),  # the bar before them: only the 20-session return sees it
    ]
    for symbol, (column, at, value) in zip(symbols[::3], damage, strict=False):
        dirty.loc[rows_of[symbol][at], column] = value
    stale, short = symbols[1], symbols[4]
    dirty = dirty.drop(rows_of[stale][-1:])  # no bar for the previous session
    dirty = dirty.drop(rows_of[short][:-12])  # 12 sessions of history
    opening.loc[opening["symbol"] == symbols[7], "open"] = np.nan
    opening.loc[opening["symbol"] == symbols[10], "open"] = 0.0
    opening = pd.concat([opening, pd.DataFrame({"symbol": ["ZZZZ"], "open": [10.0], "volume": [500]})])
    override = override.copy()
    override[symbols[13]] = np.nan  # no minute close: the daily close stands
    override[symbols[16]] = -1.0

    fast = scan.scan_features(dirty, opening, prior, override)

    pd.testing.assert_frame_equal(fast, reference(dirty, opening, prior, override))
    reasons = set(fast["reject_reason"].dropna())
    assert {
        "no daily history",
        "fewer than 20 sessions of daily history",
        f"no daily bar for the previous session {prior}",
        "a daily bar in the last 20 sessions is invalid (NaN, <= 0 or high < low)",
        "no valid opening price",
        "no valid prior close",
    } <= reasons
