"""The data-quality checks on hand-made bars: bad rows, stale prices, outliers, minute gaps, split mismatches, the score."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from openbell.calendar import NEW_YORK
from openbell.core import data_quality as dq

DAY = date(2025, 3, 7)
OPEN = datetime(2025, 3, 7, 9, 30, tzinfo=NEW_YORK)


def bars(symbol: str, closes: list[float], *, minutes: list[int] | None = None, spread: float = 0.05) -> pd.DataFrame:
    minutes = minutes if minutes is not None else list(range(len(closes)))
    rows = [
        dict(symbol=symbol, ts=OPEN + timedelta(minutes=m), open=c, high=c + spread, low=c - spread, close=c, volume=100)
        for m, c in zip(minutes, closes, strict=True)
    ]
    return pd.DataFrame(rows).astype({"ts": "datetime64[us, America/New_York]"})


def checks_of(found: pd.DataFrame) -> list[tuple[str, str]]:
    return sorted(zip(found["symbol"], found["check"], strict=True))


@pytest.mark.parametrize(
    ("column", "value", "check"),
    [
        ("close", np.nan, "missing_value"),
        ("low", 0.0, "non_positive_price"),
        ("high", 9.0, "high_below_low"),  # low 9.95
        ("volume", -1, "negative_volume"),
    ],
)
def test_a_bad_minute_bar_fails_its_check_and_only_that_bar(column, value, check):
    frame = bars("AAA", [10.0, 10.0, 10.0]).astype({"volume": float})
    frame.loc[1, column] = value

    assert list(dq.bad_minute_bars(frame)) == ["", check, ""]


def test_a_duplicate_timestamp_fails_every_bar_of_the_symbols_day_and_no_other_symbol():
    frame = pd.concat([bars("AAA", [10.0, 10.1, 10.2], minutes=[0, 1, 1]), bars("BBB", [5.0, 5.1])], ignore_index=True)

    assert list(dq.bad_minute_bars(frame)) == ["duplicate_bar"] * 3 + ["", ""]


def test_dropped_rows_become_one_issue_per_bar_and_one_per_duplicated_symbol_day():
    at = [OPEN + timedelta(minutes=m) for m in (5, 0, 1, 2)]
    rejected = pd.DataFrame(
        {
            "kind": ["minute"] * 4 + ["daily"],
            "symbol": ["AAA", "BBB", "BBB", "BBB", "CCC"],
            "at": [*at, date(2025, 3, 6)],
            "reason": ["missing value", "duplicate bar", "duplicate bar", "duplicate bar", "high below low"],
        }
    )

    issues = dq.dropped_bar_issues(rejected)

    assert checks_of(issues) == [("AAA", "missing_value"), ("BBB", "duplicate_bar"), ("CCC", "high_below_low")]
    day = issues.set_index("symbol").loc["BBB"]
    assert (day["value"], day["bar_date"], pd.isna(day["ts"])) == (3.0, DAY, True)
    assert day["reason"] == "duplicate minute bars: all 3 bars of 2025-03-07 dropped"
    assert issues.set_index("symbol").loc["AAA", "ts"] == at[0]


def test_a_symbol_whose_last_bar_is_older_than_the_limit_is_stale_and_one_without_bars_too():
    frame = pd.concat([bars("OLD", [10.0], minutes=[0]), bars("NEW", [10.0], minutes=[29])], ignore_index=True)
    now = OPEN + timedelta(minutes=30)

    stale = dq.stale_symbols(frame, ["OLD", "NEW", "NONE"], now, stale_after_min=15)

    assert checks_of(stale) == [("NONE", "stale"), ("OLD", "stale")]
    assert stale.set_index("symbol").loc["OLD", "value"] == 30.0


def test_a_bar_whose_range_spans_more_than_k_daily_atrs_is_an_outlier():
    frame = bars("AAA", [10.0, 10.0, 10.0])
    frame.loc[1, "high"] = 13.1  # range 3.15 = 3.15 ATRs of $1, and a spike of 31% over its neighbours

    found = dq.outliers(frame, pd.Series({"AAA": 1.0}), outlier_atr=3, outlier_pct=50)

    assert checks_of(found) == [("AAA", "outlier_atr")]
    assert found["value"].iloc[0] == pytest.approx(3.15)
    assert dq.outliers(frame, pd.Series({"AAA": 1.1}), outlier_atr=3, outlier_pct=50).empty


def test_a_jump_between_minutes_beyond_k_atrs_is_an_outlier_but_the_sessions_first_bar_is_not():
    frame = bars("AAA", [20.0, 10.0, 14.0, 14.0])  # 20 -> 10 at the first bar is the opening gap's level; 10 -> 14 jumps

    found = dq.outliers(frame.iloc[1:].reset_index(drop=True), pd.Series({"AAA": 1.0}), outlier_atr=3, outlier_pct=50)

    assert list(found["ts"]) == [frame.loc[2, "ts"]]
    assert "move from the previous close of 4.0 daily ATRs" in found["reason"].iloc[0]


def test_a_spike_beyond_both_neighbours_is_an_outlier_and_a_move_that_stays_is_not():
    spike = bars("SPK", [10.0, 10.0, 10.0])
    spike.loc[1, "low"] = 8.5  # 15% below both neighbours' closes, then back
    move = bars("MOV", [10.0, 12.0, 12.0])  # +20% and it stays
    frame = pd.concat([move, spike], ignore_index=True)

    found = dq.outliers(frame, pd.Series({"SPK": 100.0, "MOV": 100.0}), outlier_atr=3, outlier_pct=10)

    assert checks_of(found) == [("SPK", "outlier_neighbours")]
    assert found["value"].iloc[0] == pytest.approx(15.0)


def test_the_longest_gap_between_minutes_of_a_symbol_day_over_the_limit_is_one_issue():
    frame = pd.concat(
        [bars("GAP", [10.0] * 4, minutes=[0, 40, 41, 100]), bars("OK", [5.0] * 3, minutes=[0, 30, 60])], ignore_index=True
    )

    found = dq.minute_gaps(frame, max_gap_min=30)

    assert checks_of(found) == [("GAP", "minute_gap")]
    assert (found["value"].iloc[0], found["ts"].iloc[0]) == (59.0, OPEN + timedelta(minutes=100))


def test_daily_and_minute_closes_further_apart_than_the_tolerance_are_a_split_mismatch():
    daily = pd.Series({"SPL": 50.0, "OK": 10.2, "NOMIN": 3.0})
    minute = pd.Series({"SPL": 100.0, "OK": 10.0})

    found = dq.split_mismatches(daily, minute, DAY, tolerance_pct=3)

    assert checks_of(found) == [("SPL", "split_mismatch")]
    assert found["value"].iloc[0] == pytest.approx(50.0)


def test_the_score_takes_each_failed_checks_penalty_once_and_never_goes_below_zero():
    issues = pd.DataFrame(
        {
            "symbol": ["ONE", "ONE", "TWO", "TWO", "GAP", "BAD", "BAD"],
            "check": ["outlier_atr", "outlier_atr", "outlier_atr", "minute_gap", "minute_gap", "stale", "split_mismatch"],
            "reason": ["r"] * 7,
        }
    )

    score = dq.scores(issues, ["ONE", "TWO", "GAP", "BAD", "CLEAN"])

    assert score.to_dict() == {"BAD": 0.0, "CLEAN": 1.0, "GAP": 0.75, "ONE": 0.5, "TWO": 0.25}


def test_the_gate_rejects_passing_symbols_below_the_minimum_with_the_reasons_and_keeps_earlier_rejections():
    candidates = pd.DataFrame(
        {"symbol": ["LOW", "OK", "HIST"], "passed": [True, True, False], "reject_reason": [None, None, "no daily history"]}
    )
    score = pd.Series({"LOW": 0.25, "OK": 0.5, "HIST": 0.0})
    why = pd.Series({"LOW": "bar range of 4.0 daily ATRs; gap", "OK": "gap", "HIST": "stale"})

    gated = dq.gate(candidates, score, why, min_score=0.5)

    assert list(gated["passed"]) == [False, True, False]
    assert gated.loc[0, "reject_reason"] == "data quality 0.25 below 0.5: bar range of 4.0 daily ATRs; gap"
    assert pd.isna(gated.loc[1, "reject_reason"]) and gated.loc[2, "reject_reason"] == "no daily history"


def test_the_summary_counts_dropped_bars_dropped_days_and_symbols_below_the_score():
    quality = pd.DataFrame(
        {
            "symbol": ["AAA", "BBB", "AAA", "BBB", "CCC"],
            "source": ["minute", "minute", "scan", "scan", "scan"],
            "check": ["missing_value", "duplicate_bar", "score", "score", "score"],
            "value": [2.0, 390.0, 0.5, 0.0, 1.0],
        }
    )

    assert dq.summary(quality, 0.5) == (
        "2 bars dropped (missing_value 2); 1 symbol-days dropped (duplicate bars); 1 of 3 symbols below the score 0.5 (BBB)"
    )
